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

// kSum -> ncclSum, kAverage -> ncclAvg (the sum divided by the rank count, as ReduceOp says).
inline ncclRedOp_t NcclReduceOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAverage:
      return ncclAvg;
  }
  return ncclSum;
}

}  // namespace headroom

#endif  // HEADROOM_COMM_NCCL_TYPES_H_
