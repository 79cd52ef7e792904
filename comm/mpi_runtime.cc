// MPI start-up and shut-down (see mpi_runtime.h), plus the MPI check macro's Status.
#include "comm/mpi_runtime.h"

#include <mpi.h>

#include <cstdlib>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "comm/mpi_check.h"

namespace headroom {
namespace {

int g_thread_level = -1;

// Runs at exit. A rank that aborted never gets here; one whose MPI was finalised by someone
// else is left alone.
void FinalizeMpiAtExit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace

absl::Status MpiErrorStatus(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  return absl::InternalError(absl::StrCat(call, " failed: ", length > 0 ? text : "unknown error",
                                          " (MPI error ", code, ", rank ", WorldRankForMessages(),
                                          ", ", file, ":", line, ")"));
}

absl::Status EnsureMpiInitialized() {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return absl::FailedPreconditionError("MPI was already finalised");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = MPI_THREAD_SINGLE;
    HR_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    std::atexit(FinalizeMpiAtExit);
    g_thread_level = provided;
  } else if (g_thread_level < 0) {
    HR_MPI_CHECK(MPI_Query_thread(&g_thread_level));
  }
  if (g_thread_level < MPI_THREAD_FUNNELED) {
    return absl::FailedPreconditionError(
        absl::StrCat("MPI provides thread level ", g_thread_level, ", below MPI_THREAD_FUNNELED"));
  }
  return absl::OkStatus();
}

int MpiThreadLevel() { return g_thread_level; }

bool LaunchedByMpi() {
  for (const char* var :
       {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "SLURM_NTASKS"}) {
    if (std::getenv(var) != nullptr) return true;
  }
  return false;
}

int WorldRankForMessages() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    int rank = 0;
    if (MPI_Comm_rank(MPI_COMM_WORLD, &rank) == MPI_SUCCESS) return rank;
  }
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"}) {
    const char* value = std::getenv(var);
    int rank = 0;
    if (value != nullptr && absl::SimpleAtoi(value, &rank)) return rank;
  }
  return 0;
}

}  // namespace headroom
