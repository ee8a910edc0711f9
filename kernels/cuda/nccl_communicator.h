// kernels/cuda/nccl_communicator.h: the NCCL Communicator, for tensors in CUDA memory.
// Plain C++ (no CUDA or NCCL headers): the MPI side (src/parallel/mpi) bootstraps it.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "backend.h"
#include "parallel/communicator.h"

namespace kestrel {

// ncclUniqueId as bytes, so MPI can broadcast it from rank 0 of a group.
struct NcclUniqueId {
  std::array<char, 128> bytes{};
};
NcclUniqueId nccl_unique_id();

// Joins the NCCL communicator of `size` ranks named by `id` as `rank`; its collectives
// run on the backend's stream, in order with the kernels around them. Waits (init,
// synchronize, barrier) are bounded by `timeout_seconds`, after which the communicator is
// aborted and Error(device) names the operation.
std::unique_ptr<Communicator> make_nccl_communicator(Backend& backend, const NcclUniqueId& id, int size,
                                                     int rank, const std::string& name,
                                                     double timeout_seconds);

}  // namespace kestrel
