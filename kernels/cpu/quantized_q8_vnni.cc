// The 8-bit-activation block dot products for AVX-512 VNNI (vpdpbusd / vpdpwssd on 256-bit
// vectors, AVX-512 VL): quantized_q8_simd.h and interleaved_rows_simd.h compiled with those
// flags (CMakeLists.txt); chosen at run time on processors that have them (Intel since
// Cascade Lake, AMD since Zen 4).
#if defined(__x86_64__) && defined(__AVX512VNNI__)
#define KESTREL_Q8_NS q8_vnni
#include "cpu/quantized_q8_simd.h"
#include "cpu/interleaved_rows_simd.h"
#endif
