// The 8-bit-activation block dot products for AVX2 (+ FMA, F16C): quantized_q8_simd.h and
// interleaved_rows_simd.h compiled with -mavx2 -mfma -mf16c (CMakeLists.txt); chosen at
// run time.
#if defined(__x86_64__) && defined(__AVX2__)
#define KESTREL_Q8_NS q8_avx2
#include "cpu/quantized_q8_simd.h"
#include "cpu/interleaved_rows_simd.h"
#endif
