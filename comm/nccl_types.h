// The NCCL names of comm/'s element types and reductions (CUDA builds only), in one place so that
// the mapping is unit-tested (tests/comm/nccl_communicator_test.cc, no GPU needed): a wrong entry
// here would make every NCCL collective reinterpret or mis-reduce its buffers.
#ifndef HEADROOM_COMM_NCCL_TYPES_H_
#define HEADROOM_COMM_NCCL_TYPES_H_

#include <nccl.h>

#include "comm/communicator.h"

namespace headroom {

// kFloat32 -> ncclFloat32, kFloat64 -> ncclFloat64, kInt32 -> ncclInt32.
inline ncclDataType_t NcclDataType(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return ncclFloat32;
    case DataType::kFloat64:
      return ncclFloat64;
    case DataType::kInt32:
      return ncclInt32;
  }
  return ncclFloat32;
}

// kSum -> ncclSum, kAverage -> ncclAvg (the sum divided by the rank count, as ReduceOp says),
// except that a one-rank average is ncclSum: the average of one contribution is itself, exactly,
// and NCCL before 2.29.7 leaves the last elements of a one-rank ncclAvg unwritten (NVIDIA/nccl
// issue 1950: its one-rank kernel splits count / blocks rounding down). The H100 machine's NCCL
// 2.28.3 did so in tests/comm/nccl_communicator_test.cc on 2026-12-06, at 4097 and 2^22 + 3
// elements.
inline ncclRedOp_t NcclReduceOp(ReduceOp op, int ranks) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAverage:
      return ranks == 1 ? ncclSum : ncclAvg;
  }
  return ncclSum;
}

}  // namespace headroom

#endif  // HEADROOM_COMM_NCCL_TYPES_H_
