// quantkit command-line entry point: one subcommand per file in this folder.
#include <cstdio>
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
  for (const auto& c : commands)
    if (c.app->parsed()) return c.run();
  return 2;
}
