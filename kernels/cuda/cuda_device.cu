// kernels/cuda/cuda_device.cu: CUDA device discovery and the backend factory.
//
// This build compiles the CUDA toolchain path end to end (CI has nvcc but no GPU). The
// fused CUDA operations are not written yet, so make_cuda_backend reports that plainly
// instead of handing out a backend that cannot run a model.
#include <cuda_runtime.h>

#include <string>

#include "backend.h"
#include "kestrel/error.h"

namespace kestrel {

bool cuda_backend_available() noexcept {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0)
    throw Error(ErrorCategory::device, std::string("device cuda:") + std::to_string(device_index) +
                                           ": no CUDA device available (" + cudaGetErrorString(status) + ")");
  if (device_index < 0 || device_index >= count)
    throw Error(ErrorCategory::invalid_argument, "device cuda:" + std::to_string(device_index) +
                                                     ": this machine has " + std::to_string(count) +
                                                     " CUDA device(s)");
  throw Error(ErrorCategory::unsupported,
              "device cuda: the CUDA operations of this build are not implemented yet; use --device cpu");
}

}  // namespace kestrel
