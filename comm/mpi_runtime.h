// Process-wide MPI start-up and shut-down.
//
// MPI may be initialised only once per process. EnsureMpiInitialized() does it on first use
// (any communicator, the NCCL id broadcast, tests), asking for MPI_THREAD_FUNNELED: only the
// thread that initialised MPI makes MPI calls, which is how headroom uses it (collectives are
// started and polled from the training thread; see comm/mpi_communicator.h on progress). It
// registers MPI_Finalize to run at exit, because Open MPI's mpirun treats a rank that exits
// without finalising as failed. A process that was not started by a launcher becomes an MPI
// "singleton" of size 1.
#ifndef HEADROOM_COMM_MPI_RUNTIME_H_
#define HEADROOM_COMM_MPI_RUNTIME_H_

#include "absl/status/status.h"

namespace headroom {

// Initialises MPI once (MPI_Init_thread with MPI_THREAD_FUNNELED) unless it already is, and
// arranges MPI_Finalize at exit. FailedPrecondition if MPI provides less than FUNNELED or was
// already finalised. Must be called from the thread that will make every MPI call.
[[nodiscard]] absl::Status EnsureMpiInitialized();

// The thread level MPI provided (MPI_THREAD_*); valid after EnsureMpiInitialized().
int MpiThreadLevel();

// True when a launcher (mpirun/mpiexec of Open MPI or MPICH/PMIx, or Slurm's srun) started this
// process, judged from its environment; used by the "auto" backend.
bool LaunchedByMpi();

// This process's rank for messages: MPI_COMM_WORLD's when MPI is initialised, else the
// launcher's environment (OMPI_COMM_WORLD_RANK, PMI_RANK, PMIX_RANK, SLURM_PROCID), else 0.
int WorldRankForMessages();

}  // namespace headroom

#endif  // HEADROOM_COMM_MPI_RUNTIME_H_
