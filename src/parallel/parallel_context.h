// parallel/parallel_context.h: a rank's view of a parallel run (internal).
#pragma once

#include <exception>
#include <memory>
#include <string>

#include "backend.h"
#include "kestrel/parallel.h"
#include "parallel/communicator.h"
#include "parallel/shard.h"

namespace kestrel {

struct ParallelContext {
  Shard shard;
  int rank = 0;  // in the job
  int size = 1;
  double timeout_seconds = 300.0;
  // Host memory, every rank of the job: tokens chosen by the last stage, error agreement.
  std::unique_ptr<Communicator> world;
  // The backend's tensors among the tp ranks of this stage (all-reduce, logits gather).
  std::unique_ptr<Communicator> tensor;
  // The backend's tensors between stages: the ranks with this tensor rank, one per stage.
  std::unique_ptr<Communicator> pipeline;

  bool parallel() const { return size > 1; }
  // The job rank of the first rank of the last stage, which broadcasts sampled tokens.
  int sampler_rank() const { return (shard.pp - 1) * shard.tp; }
};

// A parallel run is set up in steps, each one reached by every rank together, with
// agree_on_errors() between the steps that can fail on one rank alone (reading files,
// creating the device), so that no rank waits in a collective for a peer that already
// gave up.
//
// 1. Starts MPI if needed and checks that the job has tp x pp ranks; throws
//    Error(invalid_argument) with the same message on every rank otherwise, and
//    Error(unsupported) when this build has no MPI. No collective call.
std::unique_ptr<ParallelContext> join_parallel_run(const ParallelOptions& options);
// 2. Every rank calls this at the same point with the error it hit (or none). If any rank
//    failed, every rank throws an Error naming the lowest failed rank and its message, so
//    a bad file on one node stops the whole job with the same message everywhere.
void agree_on_errors(ParallelContext& context, std::exception_ptr error);
// 3. Splits the job into the tensor-parallel groups (one per stage) and the pipeline
//    groups (one per tensor rank), with MPI communicators for host tensors. context.shard
//    must be set.
void form_groups(ParallelContext& context);
// 4. Replaces the tensor and pipeline communicators by ones for the backend's device
//    (NCCL, bootstrapped over the MPI groups) when the backend is not the CPU; throws
//    Error(unsupported) when this build has no NCCL.
void connect_device_communicators(ParallelContext& context, Backend& backend);

// The rank of this process among the ranks of the job on its node (the CUDA device it
// uses when there are several).
int node_local_rank();

}  // namespace kestrel
