#include "parallel/mpi/mpi_communicator.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <thread>

#include "kestrel/error.h"

namespace kestrel {

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, double timeout_seconds)
    : comm_(comm), name_(std::move(name)), timeout_seconds_(timeout_seconds) {
  // Errors come back as return codes (checked below), never as an abort inside MPI.
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized || comm_ == MPI_COMM_NULL) return;
  // Sends still queued belong to a step that failed; let them go rather than wait.
  for (MPI_Request& r : sends_) MPI_Request_free(&r);
  MPI_Comm_free(&comm_);
}

int MpiCommunicator::count(size_t n, const char* op) const {
  if (n > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw Error(ErrorCategory::limit, std::string(op) + " in the " + name_ + ": " + std::to_string(n) +
                                          " elements is more than one MPI call moves");
  return static_cast<int>(n);
}

void MpiCommunicator::check(int status, const char* op) const {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  throw Error(ErrorCategory::device, std::string(op) + " in the " + name_ + " failed: " + std::string(text, length));
}

void MpiCommunicator::require_host(const TensorView& x, const char* op) const {
  if (x.device.kind != DeviceKind::cpu)
    throw Error(ErrorCategory::internal, std::string(op) + " in the " + name_ + ": MPI moves host tensors only, got " +
                                             x.shape_string());
}

// Polls instead of blocking so that a peer that died or took another path cannot hang
// this rank: yields first (a decode step's collectives finish in microseconds), then
// sleeps briefly so that ranks sharing cores leave them to the ranks still computing.
void MpiCommunicator::wait(MPI_Request& request, const char* op) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  for (int polls = 0;; ++polls) {
    int done = 0;
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), op);
    if (done) return;
    if (polls < 200) {
      std::this_thread::yield();
      continue;
    }
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (waited > timeout_seconds_)
      throw Error(ErrorCategory::device,
                  std::string(op) + " in the " + name_ + " (rank " + std::to_string(rank_) + " of " +
                      std::to_string(size_) + ") waited " + std::to_string(static_cast<int>(waited)) +
                      " s for its peers: a rank died, failed or took another path "
                      "(ParallelOptions.timeout_seconds)");
    std::this_thread::sleep_for(std::chrono::microseconds(polls < 2000 ? 20 : 500));
  }
}

void MpiCommunicator::all_reduce_sum(TensorView x) {
  require_host(x, "all_reduce_sum");
  if (x.dtype != DType::f32)
    throw Error(ErrorCategory::unsupported,
                "all_reduce_sum in the " + name_ + ": MPI sums f32 host tensors, got " + x.shape_string());
  MPI_Request request;
  check(MPI_Iallreduce(MPI_IN_PLACE, x.data, count(static_cast<size_t>(x.numel()), "all_reduce_sum"), MPI_FLOAT, MPI_SUM, comm_, &request),
        "MPI_Iallreduce");
  wait(request, "all_reduce_sum");
}

void MpiCommunicator::all_gather_bytes(const void* in, void* out, size_t bytes) {
  MPI_Request request;
  const int n = count(bytes, "all_gather");
  check(MPI_Iallgather(in, n, MPI_BYTE, out, n, MPI_BYTE, comm_,
                       &request),
        "MPI_Iallgather");
  wait(request, "all_gather");
}

void MpiCommunicator::all_gather_columns(const TensorView& in, TensorView out, TensorView scratch) {
  require_host(in, "all_gather_columns");
  const int64_t rows = in.dim(0), n = in.row_size(), columns = out.row_size();
  const size_t es = dtype_size(in.dtype);
  if (out.dim(0) != rows || columns > size_ * n || columns <= (size_ - 1) * n || scratch.numel() < size_ * in.numel() ||
      out.dtype != in.dtype || scratch.dtype != in.dtype)
    throw Error(ErrorCategory::internal, "all_gather_columns in the " + name_ + ": in " + in.shape_string() +
                                             ", out " + out.shape_string() + ", scratch " + scratch.shape_string());
  all_gather_bytes(in.data, scratch.data, in.bytes());
  // scratch is [size, rows, n]; out is [rows, columns].
  const auto* src = static_cast<const uint8_t*>(scratch.data);
  auto* dst = static_cast<uint8_t*>(out.data);
  for (int r = 0; r < size_; ++r) {
    const int64_t width = std::min(n, columns - r * n);
    for (int64_t i = 0; i < rows; ++i)
      std::memcpy(dst + static_cast<size_t>(i * columns + r * n) * es,
                  src + static_cast<size_t>((r * rows + i) * n) * es, static_cast<size_t>(width) * es);
  }
}

void MpiCommunicator::broadcast(TensorView x, int root) {
  require_host(x, "broadcast");
  MPI_Request request;
  check(MPI_Ibcast(x.data, count(x.bytes(), "broadcast"), MPI_BYTE, root, comm_, &request), "MPI_Ibcast");
  wait(request, "broadcast");
}

void MpiCommunicator::send(const TensorView& x, int peer) {
  require_host(x, "send");
  MPI_Request request;
  check(MPI_Isend(x.data, count(x.bytes(), "send"), MPI_BYTE, peer, 0, comm_, &request), "MPI_Isend");
  sends_.push_back(request);
  // Large messages move only while the sender calls into MPI: give the earlier sends of
  // this step a push here, between micro-batches, rather than only in wait_sends().
  int all_done = 0;
  check(MPI_Testall(static_cast<int>(sends_.size()), sends_.data(), &all_done, MPI_STATUSES_IGNORE), "MPI_Testall");
  if (all_done) sends_.clear();
}

void MpiCommunicator::recv(TensorView x, int peer) {
  require_host(x, "recv");
  MPI_Request request;
  check(MPI_Irecv(x.data, count(x.bytes(), "recv"), MPI_BYTE, peer, 0, comm_, &request), "MPI_Irecv");
  wait(request, "recv");
}

void MpiCommunicator::wait_sends() {
  for (MPI_Request& r : sends_) wait(r, "send");
  sends_.clear();
}

void MpiCommunicator::barrier() {
  MPI_Request request;
  check(MPI_Ibarrier(comm_, &request), "MPI_Ibarrier");
  wait(request, "barrier");
}

}  // namespace kestrel
