// CreateCommunicator: backend names and the choice between them (see the header).
#include "comm/create_communicator.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_runtime.h"
#include "comm/single_process_communicator.h"
#ifdef HEADROOM_HAVE_CUDA
#include "comm/nccl_communicator.h"
#endif

namespace headroom {

absl::StatusOr<CommBackend> ParseCommBackend(absl::string_view name) {
  if (name == "auto") return CommBackend::kAuto;
  if (name == "single") return CommBackend::kSingle;
  if (name == "mpi") return CommBackend::kMpi;
  if (name == "nccl") return CommBackend::kNccl;
  return absl::InvalidArgumentError(absl::StrCat("unknown communicator backend '", name,
                                                 "'; expected auto, single, mpi or nccl"));
}

const char* CommBackendName(CommBackend backend) {
  switch (backend) {
    case CommBackend::kAuto:
      return "auto";
    case CommBackend::kSingle:
      return "single";
    case CommBackend::kMpi:
      return "mpi";
    case CommBackend::kNccl:
      return "nccl";
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(
    const CommunicatorOptions& options) {
  CommBackend backend = options.backend;
  if (backend == CommBackend::kAuto) {
    backend = LaunchedByMpi() ? CommBackend::kMpi : CommBackend::kSingle;
  }
  switch (backend) {
    case CommBackend::kSingle:
      return std::unique_ptr<Communicator>(std::make_unique<SingleProcessCommunicator>());
    case CommBackend::kMpi: {
      HR_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> mpi,
                          MpiCommunicator::Create(options.timeout));
      return std::unique_ptr<Communicator>(std::move(mpi));
    }
    case CommBackend::kNccl: {
#ifdef HEADROOM_HAVE_CUDA
      NcclOptions nccl;
      nccl.device = options.device;
      nccl.timeout = options.timeout;
      HR_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> c, NcclCommunicator::Create(nccl));
      return std::unique_ptr<Communicator>(std::move(c));
#else
      return absl::UnavailableError(
          "communicator backend nccl: this build has no CUDA (configure with -DHEADROOM_CUDA=ON)");
#endif
    }
    case CommBackend::kAuto:
      break;
  }
  return absl::InternalError("unreachable communicator backend");
}

}  // namespace headroom
