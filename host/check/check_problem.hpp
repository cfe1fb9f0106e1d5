// One thing wrong with a release, as `hotswap check` and the offline
// `hotswap plan` report it: the file, the field inside it, and the message.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace hotswap::host {

struct CheckProblem {
  // Relative to the checked release ("manifest.json", "appups/counter-2.0.0.appup.json",
  // "modules/counter-2.0.0.so"); a file of another release is named by its path.
  std::string file;
  // Where in the file: a JSON path ("modules[0].sha256", "up[0].instructions[0]"),
  // a part of a library ("hotswap_module_entry", "descriptor.version", "ELF image");
  // empty when the problem is the whole file (it cannot be read, or is not JSON).
  std::string field;
  std::string message;

  // "file: field: message" (without "field: " when there is none).
  std::string describe() const { return file + ": " + (field.empty() ? "" : field + ": ") + message; }
  nlohmann::json to_json() const { return {{"file", file}, {"field", field}, {"message", message}}; }
};

}  // namespace hotswap::host
