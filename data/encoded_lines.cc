// EncodedLines (see encoded_lines.h): blocks of lines tokenized on worker threads.
#include "data/encoded_lines.h"

#include <algorithm>
#include <thread>
#include <utility>

namespace headroom {

int WorkerCount(int requested) {
  if (requested > 0) return requested;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

EncodedLines::EncodedLines(TextReader reader, Encoder encode, int num_workers, size_t block_bytes)
    : reader_(std::move(reader)),
      encode_(std::move(encode)),
      workers_(WorkerCount(num_workers)),
      block_bytes_(std::max<size_t>(block_bytes, 1)) {}

double EncodedLines::fraction() const {
  return reader_.total_bytes() == 0
             ? 1.0
             : static_cast<double>(reader_.bytes_read()) / reader_.total_bytes();
}

bool EncodedLines::Next(const std::string** line, const std::vector<int32_t>** ids) {
  if (next_ == lines_.size() && !Refill()) return false;
  *line = &lines_[next_];
  *ids = &ids_[next_];
  ++next_;
  return true;
}

bool EncodedLines::Refill() {
  if (eof_ || !status_.ok()) return false;
  lines_.clear();
  next_ = 0;
  size_t bytes = 0;
  std::string line;
  while (bytes < block_bytes_) {
    if (!reader_.NextLine(&line)) {
      eof_ = true;
      if (!reader_.status().ok()) {
        status_ = reader_.status();
        return false;
      }
      break;
    }
    bytes += line.size() + 1;
    lines_.push_back(std::move(line));
  }
  if (lines_.empty()) return false;
  ids_.assign(lines_.size(), {});
  // Worker w encodes lines [n * w / W, n * (w + 1) / W) and keeps its first error; the first
  // error in line order wins, whatever the number of workers.
  const size_t n = lines_.size();
  const int workers = static_cast<int>(std::min<size_t>(static_cast<size_t>(workers_), n));
  std::vector<absl::Status> errors(n);
  auto work = [&](int w) {
    for (size_t i = n * w / workers; i < n * (w + 1) / workers; ++i) {
      if (lines_[i].empty()) continue;
      errors[i] = encode_(lines_[i], &ids_[i]);
      if (!errors[i].ok()) return;
    }
  };
  std::vector<std::thread> threads;
  for (int w = 1; w < workers; ++w) threads.emplace_back(work, w);
  work(0);
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < n; ++i) {
    if (!errors[i].ok()) {
      status_ = errors[i];
      return false;
    }
  }
  return true;
}

}  // namespace headroom
