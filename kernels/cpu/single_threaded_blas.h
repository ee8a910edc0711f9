// kernels/cpu/single_threaded_blas.h: OpenMP libraries (oneDNN, OpenBLAS's OpenMP build)
// confined to the calling thread, for products the backend's thread pool splits itself.
#pragma once

namespace kestrel::cpu {

// OpenBLAS and OpenMP on the calling thread alone until destroyed (the previous count back).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_;
};

}  // namespace kestrel::cpu
