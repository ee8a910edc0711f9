// The NCCL communicator on one GPU: a group of one rank, so every collective must leave
// its data as a single rank sees it (sum of one = itself, gather of one = a copy laid out
// by rows). Multi-GPU runs go through tests/parallel under mpirun on a machine with
// several GPUs. Skips without a GPU or without NCCL in this build.
#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "test_support.h"
#ifdef KESTREL_WITH_NCCL
#include "cuda/nccl_communicator.h"
#endif

namespace kestrel {
namespace {

using testing::DeviceTensor;

TEST(NcclCommunicator, OneRankCollectivesKeepTheData) {
#ifndef KESTREL_WITH_NCCL
  GTEST_SKIP() << "this build has no NCCL (needs the CUDA backend, MPI and libnccl)";
#else
  if (auto reason = testing::cuda_unavailable_reason(); !reason.empty()) GTEST_SKIP() << "no CUDA device: " << reason;
  auto backend = testing::make_test_cuda_backend();
  auto comm = make_nccl_communicator(*backend, nccl_unique_id(), 1, 0, "one-rank test group", 30);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->rank(), 0);

  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    const std::vector<float> values = testing::round_to(dtype, testing::random_floats(6 * 40, 7));
    DeviceTensor x(*backend, dtype, {6, 40});
    x.set(values);
    comm->all_reduce_sum(x);
    comm->synchronize();
    EXPECT_EQ(x.floats(), values) << to_string(dtype);

    DeviceTensor gathered(*backend, dtype, {6, 40}), scratch(*backend, dtype, {6 * 40});
    comm->all_gather_columns(x, gathered, scratch);
    EXPECT_EQ(gathered.floats(), values) << to_string(dtype);
  }
  std::vector<int32_t> ids = testing::random_ints(17, 3, 0, 1000);
  DeviceTensor t(*backend, DType::i32, {17});
  t.set(ids);
  comm->broadcast(t, 0);
  comm->barrier();
  EXPECT_EQ(t.ints(), ids);
#endif
}

}  // namespace
}  // namespace kestrel
