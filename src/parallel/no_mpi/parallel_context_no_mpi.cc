// A build without MPI: single-process runs only; asking for tp x pp > 1 is a clear error.
#include <cstdio>
#include <cstdlib>

#include "kestrel/error.h"
#include "parallel/parallel_context.h"

namespace kestrel {

std::unique_ptr<ParallelContext> join_parallel_run(const ParallelOptions& options) {
  throw Error(ErrorCategory::unsupported,
              "ParallelOptions: tensor_parallel " + std::to_string(options.tensor_parallel) +
                  " x pipeline_parallel " + std::to_string(options.pipeline_parallel) +
                  " needs MPI, and this build of Kestrel has none (install libopenmpi-dev and rebuild)");
}

void agree_on_errors(ParallelContext&, std::exception_ptr error) {
  if (error) std::rethrow_exception(error);
}

void form_groups(ParallelContext&) {}
void connect_device_communicators(ParallelContext&, Backend&) {}
int node_local_rank() { return 0; }

void abort_parallel_run(int exit_code) noexcept {
  std::fflush(nullptr);
  std::exit(exit_code);
}

}  // namespace kestrel
