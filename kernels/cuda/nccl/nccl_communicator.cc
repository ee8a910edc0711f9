// The NCCL Communicator: collectives and transfers of device tensors, enqueued on the
// CUDA backend's stream so they run in order with the kernels before and after them.
//
// The communicator is created non-blocking (ncclConfig_t.blocking = 0): every NCCL call
// returns at once and its completion is polled, so a peer that died cannot hang this rank
// beyond the run's timeout; on timeout the communicator is aborted (ncclCommAbort).
//
// Transfers between pipeline stages go on the same stream as the compute, so a stage does
// not overlap sending micro-batch m with computing m + 1 (a side stream with events would).
#include "cuda/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "cuda/cuda_ops.h"
#include "kestrel/error.h"

namespace kestrel {

namespace {

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i8: return ncclInt8;
  }
  return ncclInt8;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Backend& backend, const NcclUniqueId& id, int size, int rank, std::string name,
                   double timeout_seconds)
      : device_(backend.device().index),
        stream_(cuda::backend_stream(backend)),
        name_(std::move(name)),
        timeout_seconds_(timeout_seconds),
        rank_(rank),
        size_(size) {
    static_assert(sizeof(ncclUniqueId) == sizeof(NcclUniqueId::bytes), "ncclUniqueId size");
    ncclUniqueId nccl_id;
    std::memcpy(&nccl_id, id.bytes.data(), sizeof(nccl_id));
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    cuda::check(cudaSetDevice(device_), "NCCL init");
    check(ncclCommInitRankConfig(&comm_, size, nccl_id, rank, &config), "ncclCommInitRankConfig");
    wait_ready("ncclCommInitRankConfig");
  }

  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
    if (scratch_) cudaFree(scratch_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }

  void all_reduce_sum(TensorView x) override {
    require_device(x, "all_reduce_sum");
    check(ncclAllReduce(x.data, x.data, static_cast<size_t>(x.numel()), nccl_type(x.dtype), ncclSum, comm_,
                        stream_),
          "ncclAllReduce");
    wait_ready("ncclAllReduce");
  }

  void all_gather_columns(const TensorView& in, TensorView out, TensorView scratch) override {
    require_device(in, "all_gather_columns");
    const int64_t rows = in.dim(0), n = in.row_size(), columns = out.row_size();
    const size_t es = dtype_size(in.dtype);
    if (out.dim(0) != rows || columns > size_ * n || columns <= (size_ - 1) * n ||
        scratch.numel() < size_ * in.numel() || out.dtype != in.dtype || scratch.dtype != in.dtype)
      throw Error(ErrorCategory::internal, "all_gather_columns in the " + name_ + ": in " + in.shape_string() +
                                               ", out " + out.shape_string());
    check(ncclAllGather(in.data, scratch.data, static_cast<size_t>(in.numel()), nccl_type(in.dtype), comm_,
                        stream_),
          "ncclAllGather");
    wait_ready("ncclAllGather");
    // scratch is [size, rows, n]; out is [rows, columns]: one strided copy per rank, the
    // padding columns of the last ranks left out.
    for (int r = 0; r < size_; ++r) {
      const int64_t width = std::min(n, columns - r * n);
      cuda::check(cudaMemcpy2DAsync(static_cast<char*>(out.data) + r * n * es, columns * es,
                                    static_cast<const char*>(scratch.data) + r * rows * n * es, n * es,
                                    width * es, static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, stream_),
                  "all_gather_columns");
    }
  }

  void broadcast(TensorView x, int root) override {
    require_device(x, "broadcast");
    check(ncclBroadcast(x.data, x.data, x.bytes(), ncclInt8, root, comm_, stream_), "ncclBroadcast");
    wait_ready("ncclBroadcast");
  }

  void send(const TensorView& x, int peer) override {
    require_device(x, "send");
    check(ncclSend(x.data, x.bytes(), ncclInt8, peer, comm_, stream_), "ncclSend");
    wait_ready("ncclSend");
  }

  void recv(TensorView x, int peer) override {
    require_device(x, "recv");
    check(ncclRecv(x.data, x.bytes(), ncclInt8, peer, comm_, stream_), "ncclRecv");
    wait_ready("ncclRecv");
  }

  // Sends are ordered on the stream before any later kernel that could overwrite them.
  void wait_sends() override {}

  void synchronize() override {
    const auto start = Clock::now();
    for (;;) {
      const cudaError_t status = cudaStreamQuery(stream_);
      if (status == cudaSuccess) return;
      if (status != cudaErrorNotReady) cuda::check(status, "synchronize");
      poll_async_error("synchronize");
      if (seconds_since(start) > timeout_seconds_) timeout("synchronize", start);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  void barrier() override {
    // NCCL has no barrier: an all-reduce of one value, then wait for it.
    if (!scratch_) cuda::check(cudaMalloc(&scratch_, sizeof(float)), "barrier");
    check(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_), "ncclAllReduce");
    wait_ready("barrier");
    synchronize();
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }

  void require_device(const TensorView& x, const char* op) const {
    if (x.device.kind != DeviceKind::cuda || x.device.index != device_)
      throw Error(ErrorCategory::internal, std::string(op) + " in the " + name_ + ": expected a tensor on cuda:" +
                                               std::to_string(device_) + ", got " + x.shape_string());
  }

  void check(ncclResult_t status, const char* op) {
    if (status == ncclSuccess || status == ncclInProgress) return;
    throw Error(ErrorCategory::device, std::string(op) + " in the " + name_ + ": " + ncclGetErrorString(status));
  }

  void poll_async_error(const char* op) {
    ncclResult_t async = ncclSuccess;
    check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
    if (async != ncclSuccess && async != ncclInProgress) check(async, op);
  }

  // A non-blocking communicator may still be working on the last call: wait until it
  // has been enqueued (or initialized) before the next one.
  void wait_ready(const char* op) {
    const auto start = Clock::now();
    for (;;) {
      ncclResult_t async = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
      if (async == ncclSuccess) return;
      if (async != ncclInProgress) check(async, op);
      if (seconds_since(start) > timeout_seconds_) timeout(op, start);
      std::this_thread::yield();
    }
  }

  [[noreturn]] void timeout(const char* op, Clock::time_point start) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
    throw Error(ErrorCategory::device,
                std::string(op) + " in the " + name_ + " (rank " + std::to_string(rank_) + " of " +
                    std::to_string(size_) + ") waited " + std::to_string(static_cast<int>(seconds_since(start))) +
                    " s for its peers: a rank died, failed or took another path (ParallelOptions.timeout_seconds)");
  }

  int device_;
  cudaStream_t stream_;
  std::string name_;
  double timeout_seconds_;
  int rank_, size_;
  ncclComm_t comm_ = nullptr;
  void* scratch_ = nullptr;  // one float for barrier(), taken at its first use
};

}  // namespace

NcclUniqueId nccl_unique_id() {
  ncclUniqueId id;
  const ncclResult_t status = ncclGetUniqueId(&id);
  if (status != ncclSuccess)
    throw Error(ErrorCategory::device, std::string("ncclGetUniqueId: ") + ncclGetErrorString(status));
  NcclUniqueId out;
  std::memcpy(out.bytes.data(), &id, sizeof(id));
  return out;
}

std::unique_ptr<Communicator> make_nccl_communicator(Backend& backend, const NcclUniqueId& id, int size, int rank,
                                                     const std::string& name, double timeout_seconds) {
  return std::make_unique<NcclCommunicator>(backend, id, size, rank, name, timeout_seconds);
}

}  // namespace kestrel
