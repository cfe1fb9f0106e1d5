// Loads module shared objects safely (after cr.h, without its pitfalls):
//  - each load copies the file to a fresh, never-reused path first, because
//    dlopen returns the already-loaded library for a path it has seen;
//  - RTLD_NOW | RTLD_LOCAL: unresolved symbols fail the load, not a later call,
//    and modules cannot see each other's symbols;
//  - after dlclose, dlopen(RTLD_NOLOAD) tells whether the library is really
//    gone; one that stays mapped is reported as leaked and never reused.
#pragma once

#include <hotswap/module.h>

#include <boost/filesystem/path.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace hotswap::host {

// Libraries that stayed mapped after close; shared by a loader and its libraries
// so that a library may outlive the loader.
class LeakLog {
 public:
  void record(std::string what);
  std::vector<std::string> entries() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> entries_;
};

class LoadError : public std::runtime_error {
 public:
  enum class Kind {
    MissingFile,
    UnsafePermissions,  // the file or its folder can be written by other users
    HashMismatch,
    NotSharedObject,
    UnresolvedSymbol,
    DlopenFailed,
    MissingEntry,
    AbiTooOld,
    AbiTooNew,
    BadDescriptor,
    NameMismatch,
    VersionMismatch,
  };
  LoadError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// What the caller expects the file to be. Empty fields are not checked.
struct LoadExpectation {
  std::string name;
  std::string version;
  std::string sha256;
};

// A dlopen'ed copy of a module. Destroying it closes and verifies the unload.
class LoadedLibrary {
 public:
  ~LoadedLibrary();
  LoadedLibrary(const LoadedLibrary&) = delete;
  LoadedLibrary& operator=(const LoadedLibrary&) = delete;

  // The descriptor as the host reads it: fields past the module's struct_size are zero.
  const hotswap_module_descriptor& descriptor() const { return descriptor_; }
  const std::string& name() const { return name_; }
  const std::string& version() const { return version_; }
  uint32_t state_schema() const { return descriptor_.state_schema; }
  const boost::filesystem::path& source() const { return source_; }

  // dlclose + RTLD_NOLOAD check + delete the copy. Returns true when the library
  // is unmapped. Idempotent; the destructor calls it.
  bool close();

 private:
  friend class LibraryLoader;
  LoadedLibrary(std::shared_ptr<LeakLog> leaks, void* handle, boost::filesystem::path source,
                boost::filesystem::path copy);

  std::shared_ptr<LeakLog> leaks_;
  void* handle_;
  boost::filesystem::path source_;
  boost::filesystem::path copy_;
  hotswap_module_descriptor descriptor_{};
  std::string name_;
  std::string version_;
};

class LibraryLoader {
 public:
  // Copies go to a private 0700 folder created under `scratch_parent`
  // (the system temp folder when empty) and removed with the loader.
  explicit LibraryLoader(const boost::filesystem::path& scratch_parent = {});
  ~LibraryLoader();
  LibraryLoader(const LibraryLoader&) = delete;
  LibraryLoader& operator=(const LibraryLoader&) = delete;

  // Throws LoadError naming the file and what was wrong.
  std::shared_ptr<LoadedLibrary> load(const boost::filesystem::path& file, const LoadExpectation& expect = {});

  // Libraries that stayed mapped after close ("name version (copy path)").
  std::vector<std::string> leaked() const { return leaks_->entries(); }
  const boost::filesystem::path& scratch_dir() const { return scratch_dir_; }

 private:
  boost::filesystem::path scratch_dir_;
  uint64_t next_copy_ = 0;
  std::shared_ptr<LeakLog> leaks_ = std::make_shared<LeakLog>();
};

}  // namespace hotswap::host
