// kestrel/parallel.h: tensor and pipeline parallel runs across MPI ranks.
//
// A parallel run is one MPI job of tp x pp ranks (`mpirun -np 4 app`), every rank calling
// the same API with the same arguments. Rank r sits at pipeline stage r / tp and tensor
// rank r % tp, so the ranks of one stage are neighbours (one node, fast links) and the
// stages are spread across nodes. Each rank loads only its slice of the weights: the
// attention heads and feed-forward columns of its tensor rank (Megatron style), the layers
// of its stage, and its part of the vocabulary for the LM head. Tensors move between ranks
// with NCCL on CUDA and with MPI on the CPU; control messages (chosen tokens, errors) go
// over MPI.
#pragma once

namespace kestrel {

// How a model is split across ranks; part of ModelOptions because each rank loads only
// its slice. tp x pp must equal the number of ranks in the MPI job; 1 x 1 runs on this
// process alone whether or not it was started by mpirun.
struct ParallelOptions {
  int tensor_parallel = 1;    // ranks sharing each layer (heads, FFN columns, vocabulary)
  int pipeline_parallel = 1;  // stages of consecutive layers
  // Longest a rank waits for its peers in one collective or transfer before it gives up
  // with Error(device) naming the operation: a rank that died or diverged never hangs
  // the others. Covers the slowest step of the peers, so keep it generous.
  double timeout_seconds = 300.0;
};

// Where this process sits in a parallel run (all zeros / ones for a single process).
struct ParallelInfo {
  int tensor_parallel = 1;
  int pipeline_parallel = 1;
  int rank = 0;         // in the MPI job
  int tensor_rank = 0;  // rank % tensor_parallel
  int stage = 0;        // rank / tensor_parallel
  int first_layer = 0;  // the layers this rank holds: [first_layer, first_layer + num_layers)
  int num_layers = 0;
  int num_heads = 0;     // attention heads this rank computes
  int num_kv_heads = 0;  // KV heads this rank caches (replicated when fewer than tp)
  int ffn_size = 0;      // feed-forward columns this rank holds (the first ranks may hold one
                         // block of a GGUF's down projection more: parallel/shard.h)
  int expert_ffn_size = 0;         // columns of every routed expert this rank holds (MoE)
  int shared_expert_ffn_size = 0;  // columns of the shared expert this rank holds
  int vocab_size = 0;    // vocabulary entries whose LM-head rows this rank holds
};

// The rank of this process and the size of its MPI job, read from the launcher's
// environment (Open MPI, MPICH/PMI, Slurm) without starting MPI: 0 and 1 when the process
// was not started by a launcher. Lets an application print only on rank 0 and check its
// --tp / --pp against the job size before loading anything.
int launcher_rank() noexcept;
int launcher_size() noexcept;

// Ends every rank of the job after an error on this one (MPI_Abort when MPI is running,
// std::exit otherwise). Use it where one rank failed alone, so the others do not wait for
// it until their timeout.
[[noreturn]] void abort_parallel_run(int exit_code) noexcept;

}  // namespace kestrel
