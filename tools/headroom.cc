// `headroom <command> [flags] [args]`: the one binary. Dispatches to the command table below;
// `headroom --help` lists the commands and `headroom <command> --help` shows one command's
// usage and flags. `--set FIELD=VALUE` (repeatable) overrides any config field.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tools/command.h"

namespace headroom {
namespace {

struct CommandInfo {
  const char* name;
  const char* summary;
  const char* usage;
  const char* source;  // file(s) defining the command's flags (comma-separated), for --help
  int (*run)(const CommandArgs&);
};

const CommandInfo kCommands[] = {
    {"params", "parameter counts and training FLOPs per token of configs",
     "headroom params [--format=table|csv] [--set FIELD=VALUE]... CONFIG.textproto...",
     "tools/params_command.cc", RunParams},
    {"prepare-bert", "text -> BERT pre-training shards (Google's create_pretraining_data)",
     "headroom prepare-bert --input_file=TEXT --vocab_file=vocab.txt --output_dir=DIR [flags]",
     "tools/prepare_bert_command.cc,tools/prepare_common.cc", RunPrepareBert},
    {"prepare-lm", "text -> SentencePiece ids -> LM `targets` shards (trains the model if missing)",
     "headroom prepare-lm --input_file=TEXT --spm_model=lm.model --output_dir=DIR [flags]",
     "tools/prepare_lm_command.cc,tools/prepare_common.cc", RunPrepareLm},
    {"inspect", "print the records of shard files decoded (features, token ids, text); index them",
     "headroom inspect [--vocab=vocab.txt|--spm_model=lm.model] [--limit=N] "
     "[--token_features=a,b] FILE...\n       headroom inspect --write_index FILE...",
     "tools/inspect_command.cc", RunInspect},
    {"scaling", "data-parallel scaling model: step time and efficiency for R = 8..1024 GPUs",
     "headroom scaling [--nvlink_gbs=G] [--ib_gbs=G] [--step_ms=T] [--format=table|csv] "
     "CONFIG.textproto...",
     "tools/scaling_command.cc,tools/params_command.cc", RunScaling},
    {"bench-comm", "collective bandwidth between MPI ranks (algbw, busbw, #wrong)",
     "mpirun -np R headroom bench-comm [--collectives=all_reduce,...|all] [--max_bytes=64M]",
     "tools/bench_comm_command.cc", RunBenchComm},
    {"bench", "training-step throughput (tokens/s, model GFLOP/s vs the machine's sgemm)",
     "headroom bench --config CONFIG.textproto [--device cpu|cuda] [--batch N] [--steps N] "
     "[--warmup N]",
     "tools/bench_command.cc", RunBench},
    {"train", "train a model: checkpoints, metrics.jsonl and TensorBoard files in --run_dir",
     "headroom train --config FILE --data GLOB --run_dir DIR [--device cpu|cuda] [--steps N] "
     "[--resume] [--eval_data GLOB] [--peak_tflops T] [--set FIELD=VALUE]...",
     "tools/train_command.cc", RunTrain},
    {"eval", "evaluate a checkpoint; prints loss=... perplexity=... (LM) or mlm/nsp accuracy",
     "headroom eval --checkpoint DIR --data GLOB [--eval_batches N] [--batch N] "
     "[--device cpu|cuda] [--unigram_data TRAIN_GLOB]",
     "tools/eval_command.cc", RunEval},
    {"export", "write a checkpoint's weights as one safetensors file (Hugging Face names)",
     "headroom export --checkpoint DIR --output FILE.safetensors", "tools/export_command.cc",
     RunExport},
    {"rank-demo", "Theorem 1 executable: one head fitted to a random attention pattern, per d_p",
     "headroom rank-demo [--n=16] [--seed=1] [--temperature=1] [--iterations=3000] "
     "[--head_sizes=2,4,...]",
     "tools/rank_demo_command.cc", RunRankDemo},
    {"inspect-attention", "per layer and head: rank, stable rank, entropy of the attention logits",
     "headroom inspect-attention (--checkpoint DIR | --config FILE) [--data GLOB] "
     "[--probe_sequences=4] [--rank_rtol=1e-6] [--device cpu|cuda]",
     "tools/inspect_attention_command.cc", RunInspectAttention},
};

void PrintTopHelp() {
  std::printf(
      "headroom: distributed pre-training of transformers with fixed head size attention\n"
      "(Bhojanapalli et al., Low-Rank Bottleneck in Multi-head Attention Models, ICML 2020).\n\n"
      "usage: headroom <command> [flags] [args]\n\ncommands:\n");
  for (const CommandInfo& c : kCommands) std::printf("  %-14s %s\n", c.name, c.summary);
  std::printf(
      "\n`headroom <command> --help` shows a command's usage and flags.\n"
      "Every command that reads a config accepts --set FIELD=VALUE (repeatable), e.g.\n"
      "  headroom params configs/paper/bert_large.textproto --set model.num_heads=32\n");
}

// The shared flags (tools/common_flags.h, defined once for the whole binary) each command
// reads, with their meaning for that command, for --help.
struct SharedFlag {
  const char* command;
  const char* flag;
  const char* help;
};
const SharedFlag kSharedFlags[] = {
    {"params", "format", "output format: table (aligned columns) or csv; default: table"},
    {"scaling", "format", "output format: table (aligned columns) or csv; default: table"},
    {"scaling", "peak_tflops", "GPU peak, TFLOP/s (790: bf16 GEMM measured on H100); default: 790"},
    {"bench", "config", "config file (.textproto); may also be given as an argument"},
    {"bench", "device", "backend: cpu or cuda; default: cpu"},
    {"bench", "batch",
     "sequences per step (0: train.micro_batch_size, else global_batch_size); default: 0"},
    {"bench", "steps", "timed steps; default: 5"},
    {"train", "config", "config file (.textproto); may also be given as an argument"},
    {"train", "data", "training shards: glob or comma-separated globs; default: data.train_files"},
    {"train", "device", "backend: cpu or cuda; default: cpu"},
    {"train", "steps",
     "stop after this many optimizer steps in total, counting a resumed run's earlier ones; "
     "must be > 0; default: train.steps (the whole schedule)"},
    {"train", "peak_tflops",
     "peak TFLOP/s of all devices together, for MFU in the metrics; default: MFU not shown"},
    {"eval", "checkpoint", "checkpoint directory, or a run directory (newest checkpoint)"},
    {"eval", "data", "evaluation shards: glob or comma-separated globs; default: data.eval_files"},
    {"eval", "device", "backend: cpu or cuda; default: cpu"},
    {"eval", "batch",
     "sequences per evaluation batch; default 0: train.micro_batch_size, else the global batch"},
    {"export", "checkpoint", "checkpoint directory, or a run directory (newest checkpoint)"},
    {"inspect", "spm_model",
     "SentencePiece .model to print token features as text (prepare-lm's model); or --vocab"},
    {"inspect-attention", "checkpoint", "checkpoint directory, or a run directory (newest)"},
    {"inspect-attention", "config", "config file (.textproto): a freshly initialised model"},
    {"inspect-attention", "data", "shards to take the probe batch from; default: random tokens"},
    {"inspect-attention", "device", "backend: cpu or cuda; default: cpu"},
};

// The names of the flags in `argv` (as absl parses them: -name, --name, --name=value,
// --noname for a bool; nothing after "--"), so that a command can tell a flag given with its
// default value from one not given.
std::set<std::string> GivenFlags(const std::vector<char*>& argv) {
  std::set<std::string> names;
  for (size_t i = 1; i < argv.size(); ++i) {
    absl::string_view a = argv[i];
    if (a == "--") break;
    if (!absl::ConsumePrefix(&a, "--")) {
      if (!absl::ConsumePrefix(&a, "-")) continue;
    }
    a = a.substr(0, a.find('='));
    if (a.empty()) continue;
    names.insert(std::string(a));
    if (absl::ConsumePrefix(&a, "no")) names.insert(std::string(a));
  }
  return names;
}

void PrintCommandHelp(const CommandInfo& c) {
  std::printf("headroom %s: %s\n\nusage: %s\n\nflags:\n", c.name, c.summary, c.usage);
  std::map<std::string, std::string> lines;  // by flag name
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    bool mine = false;
    for (absl::string_view src : absl::StrSplit(c.source, ',')) {
      mine = mine || absl::EndsWith(flag->Filename(), src);
    }
    if (!mine) continue;
    lines[std::string(name)] =
        absl::StrCat("  --", name, " (", flag->Help(), "; default: ", flag->DefaultValue(), ")");
  }
  for (const SharedFlag& f : kSharedFlags) {
    if (!std::strcmp(f.command, c.name))
      lines[f.flag] = absl::StrCat("  --", f.flag, " (", f.help, ")");
  }
  for (const auto& [name, line] : lines) std::printf("%s\n", line.c_str());
  std::printf("  --set FIELD=VALUE (override a config field; repeatable)\n");
}

}  // namespace

int Fail(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "headroom %s: %s\n", command.c_str(), message.c_str());
  return 1;
}

}  // namespace headroom

int main(int argc, char** argv) {
  using headroom::CommandInfo;
  absl::SetProgramUsageMessage("headroom <command> [flags] [args]; see headroom --help");
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    headroom::PrintTopHelp();
    return argc < 2 ? 2 : 0;
  }
  const CommandInfo* cmd = nullptr;
  for (const CommandInfo& c : headroom::kCommands) {
    if (!std::strcmp(argv[1], c.name)) cmd = &c;
  }
  if (cmd == nullptr) {
    std::fprintf(stderr, "headroom: unknown command '%s'; run `headroom --help` for the list\n",
                 argv[1]);
    return 2;
  }
  // Pull out --set (repeatable, values may contain commas) and --help before absl parses.
  headroom::CommandArgs args;
  std::vector<char*> rest = {argv[0]};
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      headroom::PrintCommandHelp(*cmd);
      return 0;
    }
    if (a == "--set" || a == "-set") {
      if (i + 1 >= argc) return headroom::Fail(cmd->name, "--set needs FIELD=VALUE");
      args.overrides.push_back(argv[++i]);
    } else if (absl::StartsWith(a, "--set=")) {
      args.overrides.push_back(a.substr(6));
    } else {
      rest.push_back(argv[i]);
    }
  }
  args.given_flags = headroom::GivenFlags(rest);
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(rest.size()), rest.data());
  for (size_t i = 1; i < positional.size(); ++i) args.positional.push_back(positional[i]);
  try {
    return cmd->run(args);
  } catch (const std::bad_alloc&) {
    // A host allocation that no check foresaw (trainer/memory_budget.h checks a run's model
    // before allocating it): one line instead of std::terminate's abort.
    const std::string c = cmd->name;
    return headroom::Fail(
        c, c == "train" || c == "eval" || c == "bench"
               ? "out of host memory: an allocation failed; a smaller model, "
                 "train.micro_batch_size, train.recompute_gelu or train.layernorm_from_output "
                 "need less"
               : "out of host memory: an allocation failed; the input or the flags ask for more "
                 "memory than this machine has");
  }
}
