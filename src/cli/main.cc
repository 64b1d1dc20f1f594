// quantkit command-line entry point: one subcommand per file in this folder.
#include <cctype>
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

namespace quantkit::cli {
std::string SafeFileName(const std::string& name) {
  std::string out = name.empty() ? "unnamed" : name;
  for (char& c : out)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  if (out == "." || out == "..") out = "_";
  return out;
}
}  // namespace quantkit::cli
