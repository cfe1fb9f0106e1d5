#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/library_loader.hpp"

namespace hotswap::host {

// Libraries whose instances are destroyed, still to be closed (dlclose, the
// link-map check that it unmapped, its memory copy closed). Closing may run on any thread.
class RetiredLibraries {
 public:
  void add(std::shared_ptr<LoadedLibrary> library) { libraries_.push_back(std::move(library)); }
  bool empty() const { return libraries_.empty(); }
  // Closes each library nobody else holds; returns "name version" of those that stayed mapped.
  std::vector<std::string> close_all();

 private:
  std::vector<std::shared_ptr<LoadedLibrary>> libraries_;
};

}  // namespace hotswap::host
