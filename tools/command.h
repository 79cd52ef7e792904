// The `headroom` command's subcommands (like git): each is a function over its positional
// arguments, with its own absl flags defined in its own .cc file (flags several commands read:
// tools/common_flags.h).
//
// tools/headroom.cc holds the table of commands; to add one, write `int RunFoo(const
// CommandArgs&)` in tools/foo_command.cc, declare it here and add a row to the table.
#ifndef HEADROOM_TOOLS_COMMAND_H_
#define HEADROOM_TOOLS_COMMAND_H_

#include <set>
#include <string>
#include <vector>

namespace headroom {

struct CommandArgs {
  // Positional arguments after the command name (flags removed).
  std::vector<std::string> positional;
  // Every `--set FIELD=VALUE` given, in order (config overrides; see config/load.h).
  std::vector<std::string> overrides;
  // The names of the flags given on the command line (tools/common_flags.h FlagGiven).
  std::set<std::string> given_flags;
};

// Each returns the process exit code. Errors are printed as one line on stderr.
int RunParams(const CommandArgs& args);
int RunPrepareBert(const CommandArgs& args);
int RunPrepareLm(const CommandArgs& args);
int RunInspect(const CommandArgs& args);
int RunScaling(const CommandArgs& args);
int RunBenchComm(const CommandArgs& args);
int RunBench(const CommandArgs& args);
int RunTrain(const CommandArgs& args);
int RunEval(const CommandArgs& args);
int RunExport(const CommandArgs& args);
int RunRankDemo(const CommandArgs& args);
int RunInspectAttention(const CommandArgs& args);

// Prints "headroom <command>: <message>" to stderr and returns 1 (for `return Fail(...)`).
int Fail(const std::string& command, const std::string& message);

}  // namespace headroom

#endif  // HEADROOM_TOOLS_COMMAND_H_
