// quantkit command-line entry point: one subcommand per file in this folder.
#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "cli/cli_common.h"

int main(int argc, char** argv) {
  CLI::App app{"quantkit " QUANTKIT_VERSION ": quantize ONNX models and run them fast on CPUs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "quantkit " QUANTKIT_VERSION);
  const std::vector<quantkit::cli::Command> commands = {
      quantkit::cli::AddInspectCommand(app),
      quantkit::cli::AddRunCommand(app),
      quantkit::cli::AddCompareCommand(app),
      quantkit::cli::AddQuantizeCommand(app),
      quantkit::cli::AddBenchCommand(app),
      quantkit::cli::AddCalibrateCommand(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "quantkit: error: %s (see --help)\n", e.what());
    return 2;
  }
  // Last resort: a failed allocation outside the runtime's pool (which reports its own errors)
  // or an escaped exception still ends with one error line, not an abort.
  try {
    for (const auto& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const std::bad_alloc&) {
    return quantkit::cli::ReportError(quantkit::ResourceExhausted("out of memory"));
  } catch (const std::exception& e) {
    return quantkit::cli::ReportError(quantkit::Internal(std::string("unexpected exception: ") + e.what()));
  }
  return 2;
}
