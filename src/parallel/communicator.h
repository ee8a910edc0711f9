// parallel/communicator.h: moving tensors between the ranks of a parallel run.
//
// One interface, two implementations: MPI for tensors in host memory (the CPU backend,
// and control messages on every backend) and NCCL for tensors in CUDA device memory
// (kernels/cuda/nccl, its unique id bootstrapped over MPI). Every call names a group of
// ranks fixed at creation: all ranks of the group call the collectives in the same order.
// No call waits longer than the run's timeout: a peer that died or went down a different
// path makes the call throw Error(device) naming the operation and the group.
#pragma once

#include <memory>
#include <string>

#include "core/tensor.h"

namespace kestrel {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;  // within the group
  virtual int size() const = 0;
  // What the group is, for error messages ("tensor-parallel group of stage 1").
  virtual const std::string& name() const = 0;

  // x = sum over the group of x, in place (f32, f16, bf16).
  virtual void all_reduce_sum(TensorView x) = 0;
  // Rows of logits split by columns: in [R, n] of every rank; out [R, C] with rank r's
  // columns at [r * n, min((r + 1) * n, C)), where (size() - 1) * n < C <= size() * n (the
  // columns past C are the padding of the last ranks, dropped). `scratch` holds
  // size() * R * n elements of in's dtype (the flat gather before it is laid out by rows).
  virtual void all_gather_columns(const TensorView& in, TensorView out, TensorView scratch) = 0;
  // x = x of `root`, for any dtype.
  virtual void broadcast(TensorView x, int root) = 0;
  // Point to point, any dtype. send may return before the peer has received: x must stay
  // unchanged until wait_sends() returns.
  virtual void send(const TensorView& x, int peer) = 0;
  virtual void recv(TensorView x, int peer) = 0;
  virtual void wait_sends() = 0;
  // Waits, within the timeout, until this rank's queued communication has finished (a
  // no-op where every call returns finished, as with MPI; NCCL queues on the stream).
  virtual void synchronize() = 0;
  virtual void barrier() = 0;
};

}  // namespace kestrel
