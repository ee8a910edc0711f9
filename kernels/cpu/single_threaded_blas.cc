// kernels/cpu/single_threaded_blas.cc: see single_threaded_blas.h.
#include "cpu/single_threaded_blas.h"

#include <omp.h>

namespace kestrel::cpu {

SingleThreadedBlas::SingleThreadedBlas() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
SingleThreadedBlas::~SingleThreadedBlas() { omp_set_num_threads(saved_); }

}  // namespace kestrel::cpu
