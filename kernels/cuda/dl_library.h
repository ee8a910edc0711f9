// kernels/cuda/dl_library.h: a CUDA toolkit library opened at run time and its symbols
// resolved (the cuBLAS and cuBLASLt loaders), so that libkestrel does not link it.
#pragma once

#include <dlfcn.h>

#include <string>

#include "kestrel/error.h"

namespace kestrel::cuda {

// dlopen(library), kept for the process; Error(device) naming it and `what` it is.
inline void* open_library(const std::string& library, const std::string& what) {
  void* lib = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) throw Error(ErrorCategory::device, "cannot load " + library + " (" + what + "): " + dlerror());
  return lib;
}

// *out = the symbol `name` of lib; Error(device) naming it when missing.
template <class F>
void resolve(void* lib, const char* name, const std::string& library, F* out) {
  void* symbol = dlsym(lib, name);
  if (!symbol)
    throw Error(ErrorCategory::device, library + ": symbol " + name + " not found (" + dlerror() + ")");
  *out = reinterpret_cast<F>(symbol);
}

}  // namespace kestrel::cuda
