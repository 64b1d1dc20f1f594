// Shared pieces of the CLI commands: error reporting and exit codes.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <string>

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


}  // namespace quantkit::cli
