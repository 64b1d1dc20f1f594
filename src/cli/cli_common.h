// Shared pieces of the CLI commands: error reporting and exit codes.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "quantkit/ir.h"
#include "quantkit/status.h"

namespace quantkit::cli {

// Exit codes: 0 success, 2 bad input (model, data, options), 1 internal error.
inline int ExitCodeFor(const Status& s) {
  if (s.ok()) return 0;
  return s.code() == StatusCode::kInternal ? 1 : 2;
}

// Prints "quantkit: error: <message>" as one line and returns the exit code.
inline int ReportError(const Status& s) {
  std::string msg = s.message();
  for (char& c : msg)
    if (c == '\n') c = ' ';
  std::fprintf(stderr, "quantkit: error: %s\n", msg.c_str());
  return ExitCodeFor(s);
}

// Each command adds itself to the app and returns the function to run when it was chosen.
struct Command {
  CLI::App* app;
  std::function<int()> run;
};
Command AddInspectCommand(CLI::App& app);
Command AddRunCommand(CLI::App& app);
Command AddCompareCommand(CLI::App& app);
Command AddQuantizeCommand(CLI::App& app);
Command AddBenchCommand(CLI::App& app);
Command AddCalibrateCommand(CLI::App& app);

// --max-memory SIZE (512M, 2G, ...; alias --max-memory-mb N): bounds the tensor memory of every
// session the command creates (default: half of RAM). Added to every command that runs a model.
void AddMemoryLimitOption(CLI::App* cmd);

// Cycles, values read before (or without) a definition, values defined twice: what a session
// would refuse, for commands that do not build one (inspect, quantize --mode dynamic).
Status CheckGraphStructure(const Model& model);

// An error if `output` already exists and is one of `inputs` (by any path spelling or link).
struct NamedInput {
  std::string what;  // "model", "statistics file", ... for the message
  std::string path;
};
Status RefuseToOverwriteInput(const std::string& output, const std::vector<NamedInput>& inputs);


}  // namespace quantkit::cli
