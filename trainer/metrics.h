// Training metrics: a console line per logged step, JSON lines, TensorBoard event files.
//
// For every LogTrain call, MetricsLogger
//   - prints one line to the console:
//       step 1200/10000 | loss 3.4521 | lr 9.88e-05 | grad_norm 0.812 | 41,210 tok/s |
//       MFU 38.2% | mem 1.25 GiB | ETA 1h02m
//     (MFU = flops_per_token * tokens/s / peak_flops, shown when a peak is given);
//   - appends one JSON object per line to RUN_DIR/metrics.jsonl:
//       {"split":"train","step":1200,"loss":3.4521,"lr":9.88e-05,"grad_norm":0.812,
//        "tokens_per_sec":41210,"mfu":0.382,"memory_bytes":1342177280,"wall_time":1.7e9,...}
//     (eval lines have "split":"eval" and their own keys); flushed per line so `tail -f` works;
//   - appends one TensorBoard Event per scalar ("train/loss", "train/lr", "eval/loss", ...) to
//     RUN_DIR/tb/events.out.tfevents.<unix seconds>.<host>: TFRecord framing
//     (data/record_writer.h's AppendRecord) of trainer/tensorboard.proto Events, the first
//     carrying file_version "brain.Event:2", as TensorFlow's summary writer does.
// The files are opened for appending: a resumed run continues them (TensorBoard shows the later
// value where a step repeats; a reader of metrics.jsonl should keep the last line per step).
// A partial last line of metrics.jsonl (a run killed mid-write) is cut off on opening, so the
// file stays valid JSON lines.
// Event files are flushed per log call and fsynced by Flush()/destruction.
//
// Example:
//   MetricsOptions o{.run_dir = dir, .total_steps = 10000, .flops_per_token = f, .peak_flops = p};
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<MetricsLogger> log, MetricsLogger::Open(o));
//   HR_RETURN_IF_ERROR(log->LogTrain({.step = s, .loss = l, .lr = lr, .grad_norm = g,
//                                     .tokens = n, .seconds = t, .steps = 10}));
#ifndef HEADROOM_TRAINER_METRICS_H_
#define HEADROOM_TRAINER_METRICS_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace headroom {

struct MetricsOptions {
  // metrics.jsonl and tb/ are written here; empty: console only.
  std::string run_dir;
  // Steps of the whole run, for the ETA (0: no ETA).
  int64_t total_steps = 0;
  // Model FLOPs per trained token (model/parameter_layout.h TrainingFlopsPerToken) and the peak
  // FLOP/s of all devices of the job together; MFU is shown when both are > 0.
  double flops_per_token = 0;
  double peak_flops = 0;
  // Where the console line goes (nullptr: nowhere).
  FILE* console = stdout;
};

// What happened since the previous LogTrain call.
struct TrainRecord {
  int64_t step = 0;          // optimizer steps done
  double loss = 0;           // loss of the last step (or the mean since the last log)
  double lr = 0;             // learning rate of the last step
  double grad_norm = 0;      // gradient norm of the last step (before clipping)
  int64_t tokens = 0;        // tokens trained on since the last log (all ranks)
  double seconds = 0;        // wall time since the last log
  int64_t steps = 1;         // optimizer steps since the last log
  int64_t memory_bytes = 0;  // device memory in use, or the process's resident size on CPU
  // Further scalars (e.g. "mlm_loss"), written to JSON and TensorBoard under "train/<name>".
  std::vector<std::pair<std::string, double>> extra;
};

class MetricsLogger {
 public:
  // Creates RUN_DIR and RUN_DIR/tb if needed and opens both files for appending. Errors name the
  // path (e.g. an unwritable run directory).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MetricsLogger>> Open(
      const MetricsOptions& options);
  ~MetricsLogger();
  MetricsLogger(const MetricsLogger&) = delete;
  MetricsLogger& operator=(const MetricsLogger&) = delete;

  [[nodiscard]] absl::Status LogTrain(const TrainRecord& r);
  // An evaluation at `step`: prints "eval step N | loss ... | ..." and writes the values under
  // "eval/<name>" (in the given order).
  [[nodiscard]] absl::Status LogEval(int64_t step,
                                     const std::vector<std::pair<std::string, double>>& values);
  // fsyncs both files.
  [[nodiscard]] absl::Status Flush();

  const std::string& event_file() const { return event_path_; }

 private:
  explicit MetricsLogger(const MetricsOptions& o) : options_(o) {}
  absl::Status WriteJson(const std::string& line);
  absl::Status WriteScalars(int64_t step,
                            const std::vector<std::pair<std::string, double>>& scalars);
  absl::Status WriteEvent(const std::string& serialized);

  MetricsOptions options_;
  int json_fd_ = -1;
  int event_fd_ = -1;
  std::string json_path_;
  std::string event_path_;
};

// The resident set size of this process in bytes (Linux /proc/self/status), 0 if unknown.
int64_t ProcessResidentBytes();

// "1h02m", "3m05s", "12s".
std::string FormatDuration(double seconds);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_METRICS_H_
