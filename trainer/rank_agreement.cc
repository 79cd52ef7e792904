// Start-up agreement between ranks; see rank_agreement.h.
#include "trainer/rank_agreement.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/hash.h"
#include "base/status_macros.h"

namespace headroom {
namespace {

// Gathers `values` (the same count on every rank) from all ranks: result[r * n + i].
absl::StatusOr<std::vector<int32_t>> GatherInts(Communicator& comm,
                                                const std::vector<int32_t>& values) {
  std::vector<int32_t> all(values.size() * static_cast<size_t>(comm.size()));
  HR_RETURN_IF_ERROR(comm.AllGather(values.data(), all.data(), values.size(), DataType::kInt32));
  return all;
}

// The ranks whose `n` gathered words differ from rank 0's, as "1, 3".
std::string RanksDiffering(const std::vector<int32_t>& all, size_t n, int ranks) {
  std::string out;
  for (int r = 1; r < ranks; ++r) {
    if (!std::equal(all.begin() + r * n, all.begin() + (r + 1) * n, all.begin())) {
      absl::StrAppend(&out, out.empty() ? "" : ", ", r);
    }
  }
  return out;
}

std::vector<int32_t> Words(uint64_t x) {
  return {static_cast<int32_t>(x >> 32), static_cast<int32_t>(x & 0xffffffffu)};
}

}  // namespace

absl::Status CheckSameOnAllRanks(Communicator& comm, const std::string& config_text,
                                 int64_t parameters) {
  std::vector<int32_t> mine = Words(Fnv1a(config_text.data(), config_text.size()));
  for (int32_t w : Words(static_cast<uint64_t>(parameters))) mine.push_back(w);
  HR_ASSIGN_OR_RETURN(std::vector<int32_t> all, GatherInts(comm, mine));
  const std::string differ = RanksDiffering(all, mine.size(), comm.size());
  if (!differ.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rank(s) ", differ, " of ", comm.size(),
        " were started with another config than rank 0 (config checksums differ); start every "
        "rank with the same config file and --set flags"));
  }
  return absl::OkStatus();
}

absl::Status CheckSameWeights(Communicator& comm, const std::vector<float>& params) {
  const uint64_t h = Fnv1a(params.data(), sizeof(float) * params.size());
  HR_ASSIGN_OR_RETURN(std::vector<int32_t> all, GatherInts(comm, Words(h)));
  const std::string differ = RanksDiffering(all, 2, comm.size());
  if (!differ.empty()) {
    return absl::InternalError(
        absl::StrCat("the initial weights of rank(s) ", differ,
                     " differ from rank 0's after broadcasting them "
                     "(checksum ",
                     absl::Hex(h),
                     " on this rank); the communicator or the device copy is "
                     "broken, so training would diverge between ranks"));
  }
  return absl::OkStatus();
}

absl::Status BroadcastString(Communicator& comm, size_t size, std::string* text) {
  std::vector<int32_t> words((size + 3) / 4, 0);
  if (comm.rank() == 0) std::memcpy(words.data(), text->data(), size);
  HR_RETURN_IF_ERROR(comm.Broadcast(words.data(), words.size(), DataType::kInt32, 0));
  text->assign(reinterpret_cast<const char*>(words.data()), size);
  return absl::OkStatus();
}

}  // namespace headroom
