// Options and checks shared by the commands that read untrusted input: the memory limit, the
// graph-structure check and the refusal to overwrite an input (declared in cli_common.h).
#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <filesystem>

#include "cli/cli_common.h"
#include "passes/passes.h"
#include "runtime/buffer_pool.h"

namespace quantkit::cli {

namespace {

// "512M" -> 512 MiB. A unit is required: a bare "512" is too easily meant as megabytes.
StatusOr<uint64_t> ParseMemorySize(const std::string& text) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr + 1 != end) {
    return InvalidArgument(fmt::format("--max-memory '{}' must be a number with a unit: K, M, G or T (e.g. 512M)", text));
  }
  int shift = 0;
  switch (std::toupper(static_cast<unsigned char>(*ptr))) {
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    default:
      return InvalidArgument(fmt::format("--max-memory '{}': unknown unit '{}' (K, M, G or T)", text, *ptr));
  }
  if (value == 0 || value > (UINT64_MAX >> shift)) {
    return InvalidArgument(fmt::format("--max-memory '{}' must be positive and below 16 EiB", text));
  }
  return value << shift;
}

}  // namespace

void AddMemoryLimitOption(CLI::App* cmd) {
  // The limit is the process default for sessions (no header change needed for the library's
  // calibrate/compare paths, which create their own sessions).
  cmd->add_option_function<std::string>(
         "--max-memory",
         [](const std::string& text) {
           auto bytes = ParseMemorySize(text);
           if (!bytes.ok()) throw CLI::ValidationError(bytes.status().message());
           rt::SetDefaultMemoryLimit(*bytes);
         },
         "Limit on the runtime's memory (tensors and kernel scratch), e.g. 512M or 2G (default: half of RAM); "
         "exceeding it is an error naming the tensor or the node's scratch")
      ->type_name("SIZE");
  cmd->add_option_function<uint64_t>(
         "--max-memory-mb",
         [](uint64_t mb) {
           if (mb == 0 || mb > (UINT64_MAX >> 20)) throw CLI::ValidationError("--max-memory-mb must be positive");
           rt::SetDefaultMemoryLimit(mb << 20);
         },
         "Same as --max-memory N M")
      ->type_name("N");
}

Status RefuseToOverwriteInput(const std::string& output, const std::vector<NamedInput>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(output, ec)) return Status::Ok();
  for (const auto& [what, path] : inputs) {
    // equivalent(): same file through any spelling, symlink or hard link.
    if (!path.empty() && fs::equivalent(path, output, ec)) {
      return InvalidArgument(
          fmt::format("output '{}' is the input {} ('{}'); refusing to overwrite it", output, what, path));
    }
  }
  return Status::Ok();
}

Status CheckGraphStructure(const Model& model) {
  Graph graph = model.graph;  // sorting reorders nodes; the caller's model stays as read
  QK_RETURN_IF_ERROR(passes::TopologicalSort(graph));
  return VerifyGraph(graph);
}

}  // namespace quantkit::cli
