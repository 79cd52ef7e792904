// EncodedLines: input text line by line with each line's token ids, tokenized on several
// threads, in input order.
//
// The preparation commands spend most of their time in the tokenizer. EncodedLines reads a block
// of lines (about `block_bytes` of text), tokenizes the block's lines on `num_workers` threads
// (each a contiguous range of the block), and then hands the lines out one at a time in input
// order. What a caller sees is therefore the same for any number of workers, so the shards it
// writes are identical; memory is one block of text and ids.
//
// Example:
//   HR_ASSIGN_OR_RETURN(TextReader reader, TextReader::Open(files));
//   EncodedLines lines(std::move(reader), [&](absl::string_view text, std::vector<int32_t>* ids) {
//     tokenizer.Encode(text, ids);
//     return absl::OkStatus();
//   }, /*num_workers=*/0);
//   const std::string* line;
//   const std::vector<int32_t>* ids;
//   while (lines.Next(&line, &ids)) { ... }
//   HR_RETURN_IF_ERROR(lines.status());
#ifndef HEADROOM_DATA_ENCODED_LINES_H_
#define HEADROOM_DATA_ENCODED_LINES_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "data/text_input.h"

namespace headroom {

class EncodedLines {
 public:
  // Appends the ids of one line to `ids` (which is empty on entry). Called from several threads
  // at once: it must be thread-safe (the tokenizers' Encode are). Not called for empty lines.
  using Encoder = std::function<absl::Status(absl::string_view line, std::vector<int32_t>* ids)>;

  // num_workers <= 0: one per hardware thread.
  EncodedLines(TextReader reader, Encoder encode, int num_workers,
               size_t block_bytes = size_t{4} << 20);

  // The next line and its ids (no ids for an empty line), valid until the next call. False at
  // the end of the input, or on a read or encoding error (then status() says which).
  bool Next(const std::string** line, const std::vector<int32_t>** ids);

  // The reader's error, or the encoder's error of the first line that failed.
  const absl::Status& status() const { return status_; }
  // The fraction of the input's bytes read so far.
  double fraction() const;
  int workers() const { return workers_; }

 private:
  // Reads and encodes the next block; false when there is none.
  bool Refill();

  TextReader reader_;
  Encoder encode_;
  int workers_;
  size_t block_bytes_;
  std::vector<std::string> lines_;
  std::vector<std::vector<int32_t>> ids_;
  size_t next_ = 0;
  bool eof_ = false;
  absl::Status status_;
};

// The number of workers `requested` means: itself when > 0, else the hardware threads (>= 1).
int WorkerCount(int requested);

}  // namespace headroom

#endif  // HEADROOM_DATA_ENCODED_LINES_H_
