#include "backend.h"

#include "kestrel/error.h"

namespace kestrel {

const char* to_string(QuantFormat format) noexcept {
  switch (format) {
    case QuantFormat::int8: return "int8";
    case QuantFormat::int4: return "int4";
    case QuantFormat::q4_k: return "q4_k";
    case QuantFormat::q5_k: return "q5_k";
    case QuantFormat::q6_k: return "q6_k";
    case QuantFormat::q4_0: return "q4_0";
    case QuantFormat::q5_0: return "q5_0";
    case QuantFormat::q5_1: return "q5_1";
    case QuantFormat::iq4_nl: return "iq4_nl";
    case QuantFormat::iq4_xs: return "iq4_xs";
    case QuantFormat::q2_k: return "q2_k";
    case QuantFormat::q3_k: return "q3_k";
    case QuantFormat::mxfp4: return "mxfp4";
    case QuantFormat::fp8_e4m3: return "fp8_e4m3";
    case QuantFormat::mixed: return "mixed";
  }
  return "?";
}

#ifndef KESTREL_WITH_CUDA
std::unique_ptr<Backend> make_cuda_backend(int) {
  throw Error(ErrorCategory::unsupported,
              "device cuda: this build of Kestrel has no CUDA backend (configure with nvcc "
              "available and KESTREL_ENABLE_CUDA=ON)");
}
bool cuda_backend_available() noexcept { return false; }
#endif

}  // namespace kestrel
