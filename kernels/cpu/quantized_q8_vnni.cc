// The 8-bit-activation block dot products for AVX-512 VNNI (vpdpbusd on 256-bit vectors,
// AVX-512 VL): quantized_q8_simd.h compiled with those flags (CMakeLists.txt); chosen at run
// time on processors that have them (Intel since Cascade Lake, AMD since Zen 4).
#if defined(__x86_64__) && defined(__AVX512VNNI__)
#define KESTREL_Q8_NS q8_vnni
#include "cpu/quantized_q8_simd.h"

namespace kestrel::cpu::q8_vnni {
float row_int4(const uint8_t* q, const uint16_t* s, const uint16_t* m, int64_t nb, int bpg, const Q8Block* x) {
  return dot_int4(q, s, m, nb, bpg, x);
}
float row_int8(const int8_t* q, const float* s, int64_t nb, int bpg, const Q8Block* x) {
  return dot_int8(q, s, nb, bpg, x);
}
float row_int8_q16(const int8_t* q, const float* s, int64_t nb, int bpg, const Q16Block* x) {
  return dot_int8_q16(q, s, nb, bpg, x);
}
}  // namespace kestrel::cpu::q8_vnni
#endif
