// parallel/mpi/mpi_communicator.h: the MPI Communicator, for tensors in host memory.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace kestrel {

// Every wait is bounded: non-blocking MPI calls polled until `timeout_seconds`, then
// Error(device) naming the operation and the group. The communicator owns `comm`.
class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::string name, double timeout_seconds);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  MPI_Comm comm() const { return comm_; }

  void all_reduce_sum(TensorView x) override;
  void all_gather_columns(const TensorView& in, TensorView out, TensorView scratch) override;
  void broadcast(TensorView x, int root) override;
  void send(const TensorView& x, int peer) override;
  void recv(TensorView x, int peer) override;
  void wait_sends() override;
  void synchronize() override {}  // every call above has finished when it returns
  void barrier() override;

  // Raw bytes, for the control messages of a run: out holds size() * bytes.
  void all_gather_bytes(const void* in, void* out, size_t bytes);

 private:
  void wait(MPI_Request& request, const char* op);
  void check(int status, const char* op) const;
  int count(size_t n, const char* op) const;  // n as an MPI count, or Error(limit)
  void require_host(const TensorView& x, const char* op) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::string name_;
  double timeout_seconds_;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> sends_;
};

}  // namespace kestrel
