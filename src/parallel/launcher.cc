// Where this process sits in its job, from the launcher's environment (no MPI call).
#include <cstdlib>
#include <string>

#include "kestrel/parallel.h"

namespace kestrel {

namespace {

// The first of `names` that is set to a non-negative integer.
int env_int(std::initializer_list<const char*> names, int fallback) noexcept {
  for (const char* name : names) {
    const char* value = std::getenv(name);
    if (!value || !*value) continue;
    char* end = nullptr;
    long v = std::strtol(value, &end, 10);
    if (*end == '\0' && v >= 0 && v < (1L << 30)) return static_cast<int>(v);
  }
  return fallback;
}

}  // namespace

int launcher_rank() noexcept {
  return env_int({"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"}, 0);
}

int launcher_size() noexcept {
  return env_int({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}, 1);
}

}  // namespace kestrel
