// Loads module shared objects safely (after cr.h, without its pitfalls):
//  - each load copies the file to a fresh, never-reused path first, because
//    dlopen returns the already-loaded library for a path it has seen;
//  - RTLD_NOW | RTLD_LOCAL: unresolved symbols fail the load, not a later call,
//    and modules cannot see each other's symbols;
//  - after dlclose, dlopen(RTLD_NOLOAD) tells whether the library is really
//    gone; one that stays mapped, or whose dlclose fails, is reported as
//    leaked and never reused;
//  - close() forgets the descriptor, so no caller can reach code that is
//    about to be unmapped.
// Every file and loader call goes through an OsSysCalls, so tests can make
// dlopen or dlclose fail.
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

#include "os/os_sys_calls.hpp"

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
  // Throws std::logic_error after close(): its function pointers pointed into
  // code that is gone.
  const hotswap_module_descriptor& descriptor() const {
    if (closed_) refuse_closed();
    return descriptor_;
  }
  bool closed() const { return closed_; }
  const std::string& name() const { return name_; }
  const std::string& version() const { return version_; }
  uint32_t state_schema() const { return descriptor_.state_schema; }
  const boost::filesystem::path& source() const { return source_; }

  // Clears the descriptor, then dlclose + RTLD_NOLOAD check + delete the copy.
  // Returns true when the library is unmapped; false (and recorded as leaked)
  // when dlclose fails or the library stays mapped. Idempotent; the destructor
  // calls it.
  bool close();

 private:
  friend class LibraryLoader;
  LoadedLibrary(std::shared_ptr<LeakLog> leaks, os::OsSysCalls& os, void* handle, boost::filesystem::path source,
                boost::filesystem::path copy);
  [[noreturn]] void refuse_closed() const;

  std::shared_ptr<LeakLog> leaks_;
  os::OsSysCalls& os_;
  void* handle_;
  bool closed_ = false;
  boost::filesystem::path source_;
  boost::filesystem::path copy_;
  hotswap_module_descriptor descriptor_{};
  std::string name_;
  std::string version_;
};

class LibraryLoader {
 public:
  // Copies go to a private 0700 folder created under `scratch_parent`
  // (the system temp folder when empty) and removed with the loader. `os` must
  // outlive the loader and every library it loads.
  explicit LibraryLoader(const boost::filesystem::path& scratch_parent = {},
                         os::OsSysCalls& os = os::real_os_sys_calls());
  ~LibraryLoader();
  LibraryLoader(const LibraryLoader&) = delete;
  LibraryLoader& operator=(const LibraryLoader&) = delete;

  // Throws LoadError naming the file and what was wrong.
  std::shared_ptr<LoadedLibrary> load(const boost::filesystem::path& file, const LoadExpectation& expect = {});

  // Libraries that stayed mapped after close ("name version (copy path)").
  std::vector<std::string> leaked() const { return leaks_->entries(); }
  const boost::filesystem::path& scratch_dir() const { return scratch_dir_; }

 private:
  os::OsSysCalls& os_;
  boost::filesystem::path scratch_dir_;
  uint64_t next_copy_ = 0;
  std::shared_ptr<LeakLog> leaks_ = std::make_shared<LeakLog>();
};

}  // namespace hotswap::host
