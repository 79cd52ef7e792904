// Agreement between the ranks of a data-parallel job at start-up: every rank trains the same
// config, starts from the same weights, and learns rank 0's checkpoint position.
//
// Each check gathers a checksum (FNV-1a, base/hash.h) from every rank and names the ranks that
// differ from rank 0, so a mismatch is one clear error instead of silently diverging training.
// All functions are collective: every rank of `comm` must call them in the same order.
//
// Example:
//   HR_RETURN_IF_ERROR(CheckSameOnAllRanks(comm, config_text, layout.total()));
//   HR_RETURN_IF_ERROR(comm.Broadcast(params.data(), params.size(), DataType::kFloat32, 0));
//   HR_RETURN_IF_ERROR(CheckSameWeights(comm, params));
#ifndef HEADROOM_TRAINER_RANK_AGREEMENT_H_
#define HEADROOM_TRAINER_RANK_AGREEMENT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "comm/communicator.h"

namespace headroom {

// Before anything is broadcast: every rank must train the same config text and parameter count
// (or the broadcast sizes would not match). FailedPrecondition naming the differing ranks.
[[nodiscard]] absl::Status CheckSameOnAllRanks(Communicator& comm, const std::string& config_text,
                                               int64_t parameters);

// After the broadcast from rank 0: every rank must hold the same `params`. Internal naming the
// differing ranks (the communicator or the device copy is broken).
[[nodiscard]] absl::Status CheckSameWeights(Communicator& comm, const std::vector<float>& params);

// Broadcasts rank 0's `*text` (of `size` bytes, known to every rank) as int32 words.
[[nodiscard]] absl::Status BroadcastString(Communicator& comm, size_t size, std::string* text);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_RANK_AGREEMENT_H_
