// The communicator shared by the MPI test binaries: one per process, created on first use with
// the "auto" backend (MPI under mpirun, a singleton of size 1 otherwise), never destroyed
// before exit so that tests may keep using it.
#ifndef HEADROOM_TESTS_COMM_TEST_COMM_H_
#define HEADROOM_TESTS_COMM_TEST_COMM_H_

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace headroom {

inline Communicator& TestComm() {
  static Communicator* comm = [] {
    absl::StatusOr<std::unique_ptr<MpiCommunicator>> c = MpiCommunicator::Create();
    if (!c.ok()) AbortJob(c.status());
    return c->release();
  }();
  return *comm;
}

}  // namespace headroom

#endif  // HEADROOM_TESTS_COMM_TEST_COMM_H_
