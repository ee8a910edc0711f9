#include "backend.h"

#include "kestrel/error.h"

namespace kestrel {

#ifndef KESTREL_WITH_CUDA
std::unique_ptr<Backend> make_cuda_backend(int) {
  throw Error(ErrorCategory::unsupported,
              "device cuda: this build of Kestrel has no CUDA backend (configure with nvcc "
              "available and KESTREL_ENABLE_CUDA=ON)");
}
bool cuda_backend_available() noexcept { return false; }
#endif

}  // namespace kestrel
