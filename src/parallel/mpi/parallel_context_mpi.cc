// Setting up a parallel run over MPI: starting MPI, checking the job, forming the tensor-
// and pipeline-parallel groups, agreeing on errors, and (for CUDA) bootstrapping NCCL.
#include <mpi.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "kestrel/error.h"
#include "parallel/mpi/mpi_communicator.h"
#include "parallel/parallel_context.h"
#if KESTREL_WITH_NCCL
#include "cuda/nccl_communicator.h"
#endif

namespace kestrel {

namespace {

// MPI is started by the first parallel model of the process (unless the application
// started it) and finalized at exit by whoever started it.
void start_mpi() {
  static std::once_flag once;
  std::call_once(once, [] {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    // Only the thread that calls the API talks to MPI; OpenMP threads never do.
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      throw Error(ErrorCategory::device, "MPI_Init_thread failed");
    std::atexit([] {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Finalize();
    });
  });
}

MPI_Comm dup_world() {
  MPI_Comm comm;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &comm) != MPI_SUCCESS)
    throw Error(ErrorCategory::device, "MPI_Comm_dup of MPI_COMM_WORLD failed");
  return comm;
}

MpiCommunicator& mpi(const std::unique_ptr<Communicator>& c) {
  auto* m = dynamic_cast<MpiCommunicator*>(c.get());
  if (!m) throw Error(ErrorCategory::internal, "parallel: expected an MPI communicator");
  return *m;
}

// What one rank reports to agree_on_errors: a fixed-size record for one all-gather.
struct ErrorRecord {
  int32_t failed = 0;
  int32_t category = 0;
  std::array<char, 1016> message{};
};

}  // namespace

std::unique_ptr<ParallelContext> join_parallel_run(const ParallelOptions& options) {
  const int tp = options.tensor_parallel, pp = options.pipeline_parallel;
  if (tp < 1 || pp < 1)
    throw Error(ErrorCategory::invalid_argument,
                "ParallelOptions: tensor_parallel " + std::to_string(tp) + " and pipeline_parallel " +
                    std::to_string(pp) + " must be >= 1");
  if (!(options.timeout_seconds > 0.0))
    throw Error(ErrorCategory::invalid_argument, "ParallelOptions.timeout_seconds must be > 0");
  start_mpi();
  auto context = std::make_unique<ParallelContext>();
  MPI_Comm_rank(MPI_COMM_WORLD, &context->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &context->size);
  if (context->size != tp * pp)
    throw Error(ErrorCategory::invalid_argument,
                "ParallelOptions: tensor_parallel " + std::to_string(tp) + " x pipeline_parallel " +
                    std::to_string(pp) + " needs " + std::to_string(tp * pp) + " ranks, but this MPI job has " +
                    std::to_string(context->size) + " (launch with mpirun -np " + std::to_string(tp * pp) + ")");
  context->timeout_seconds = options.timeout_seconds;
  context->shard.tp = tp;
  context->shard.pp = pp;
  context->shard.tp_rank = context->rank % tp;
  context->shard.stage = context->rank / tp;
  context->world = std::make_unique<MpiCommunicator>(dup_world(), "job", options.timeout_seconds);
  return context;
}

void agree_on_errors(ParallelContext& context, std::exception_ptr error) {
  if (!context.parallel()) {
    if (error) std::rethrow_exception(error);
    return;
  }
  ErrorRecord mine;
  if (error) {
    mine.failed = 1;
    std::string text;
    try {
      std::rethrow_exception(error);
    } catch (const Error& e) {
      mine.category = static_cast<int32_t>(e.category());
      text = e.message();
    } catch (const std::exception& e) {
      mine.category = static_cast<int32_t>(ErrorCategory::internal);
      text = e.what();
    }
    std::strncpy(mine.message.data(), text.c_str(), mine.message.size() - 1);
  }
  std::vector<ErrorRecord> all(static_cast<size_t>(context.size));
  mpi(context.world).all_gather_bytes(&mine, all.data(), sizeof(ErrorRecord));
  int first = -1, failed = 0;
  for (int r = 0; r < context.size; ++r)
    if (all[r].failed) {
      if (first < 0) first = r;
      ++failed;
    }
  if (first < 0) return;
  const ErrorRecord& e = all[first];
  std::string message = "rank " + std::to_string(first) + " of " + std::to_string(context.size) + ": " +
                        std::string(e.message.data());
  if (failed > 1)
    message += " (" + std::to_string(failed - 1) + (failed == 2 ? " other rank" : " other ranks") + " failed too)";
  throw Error(static_cast<ErrorCategory>(e.category), message);
}

void form_groups(ParallelContext& context) {
  if (!context.parallel()) return;
  const Shard& s = context.shard;
  MPI_Comm world = mpi(context.world).comm();
  MPI_Comm tensor, pipeline;
  // Tensor groups: the ranks of one stage, ordered by tensor rank. Pipeline groups: the
  // ranks of one tensor rank, ordered by stage.
  if (MPI_Comm_split(world, s.stage, s.tp_rank, &tensor) != MPI_SUCCESS ||
      MPI_Comm_split(world, s.tp_rank, s.stage, &pipeline) != MPI_SUCCESS)
    throw Error(ErrorCategory::device, "MPI_Comm_split failed forming the tensor and pipeline groups");
  context.tensor = std::make_unique<MpiCommunicator>(
      tensor, "tensor-parallel group of stage " + std::to_string(s.stage), context.timeout_seconds);
  context.pipeline = std::make_unique<MpiCommunicator>(
      pipeline, "pipeline group of tensor rank " + std::to_string(s.tp_rank), context.timeout_seconds);
}

void connect_device_communicators(ParallelContext& context, Backend& backend) {
  if (!context.parallel() || backend.device().kind == DeviceKind::cpu) return;
#if KESTREL_WITH_NCCL
  auto nccl_over = [&](const std::unique_ptr<Communicator>& group) {
    MpiCommunicator& host = mpi(group);
    NcclUniqueId id{};
    if (host.rank() == 0) id = nccl_unique_id();
    TensorView bytes(id.bytes.data(), DType::i8, {static_cast<int64_t>(id.bytes.size())});
    host.broadcast(bytes, 0);
    return make_nccl_communicator(backend, id, host.size(), host.rank(), host.name(), context.timeout_seconds);
  };
  context.tensor = nccl_over(context.tensor);
  context.pipeline = nccl_over(context.pipeline);
#else
  throw Error(ErrorCategory::unsupported,
              "tensor / pipeline parallel on " + to_string(backend.device()) +
                  " needs NCCL, and this build of Kestrel has none");
#endif
}

int node_local_rank() {
  start_mpi();
  MPI_Comm node;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS)
    throw Error(ErrorCategory::device, "MPI_Comm_split_type failed finding the ranks of this node");
  int rank = 0;
  MPI_Comm_rank(node, &rank);
  MPI_Comm_free(&node);
  return rank;
}

void abort_parallel_run(int exit_code) noexcept {
  std::fflush(nullptr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
  }
  std::exit(exit_code);
}

}  // namespace kestrel
