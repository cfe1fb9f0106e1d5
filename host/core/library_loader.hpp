// Loads module shared objects safely (after cr.h, without its pitfalls):
//  - each load copies the file into a fresh memory file (memfd_create), seals
//    it against any change, and hashes and checks that very copy: what was
//    hashed is what runs, nothing is written to disk, nothing is left to
//    delete, and every load is a new inode at a new path (/proc/self/fd/N,
//    the memfd staying open while the library is loaded), because dlopen
//    returns the already-loaded library for a path it has seen;
//  - before dlopen, the ELF image is checked (elf_image.hpp): a truncated
//    file would kill the process with SIGBUS inside dlopen, and a library
//    with STB_GNU_UNIQUE symbols could never be unloaded;
//  - a ModuleProbe, when given, loads the library in a short-lived child
//    first: a static constructor that throws, crashes, exits or hangs costs
//    the child, not the host (a throw out of dlopen leaves glibc's loader
//    lock held, and the host's next dlclose deadlocks);
//  - RTLD_NOW | RTLD_LOCAL: unresolved symbols fail the load, not a later call,
//    and modules cannot see each other's symbols;
//  - after dlclose, the link map tells whether the library is really gone
//    (OsSysCalls::dl_is_loaded: the check dlopen(RTLD_NOLOAD) makes, without
//    opening the file, which cost a third of a trivial module's purge); one
//    that stays mapped, or whose dlclose fails, is reported as
//    leaked and never reused (its memfd stays open, so its path is never
//    handed out again);
//  - close() forgets the descriptor, so no caller can reach code that is
//    about to be unmapped.
// Every file and loader call goes through an OsSysCalls, so tests can make
// memfd_create, dlopen or dlclose fail.
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

#include "os/fd.hpp"
#include "os/os_sys_calls.hpp"

namespace hotswap::host {

// Libraries that stayed mapped after close; shared by a loader and its libraries
// so that a library may outlive the loader.
// It also counts the libraries that are loaded.
class LeakLog {
 public:
  // Also keeps `memory_file` open until the process ends (past this log and
  // its loader): ld.so knows the leaked library by its /proc/self/fd/N path,
  // and would hand it out again for a later library given the same number.
  void record(std::string what, os::Fd memory_file);
  std::vector<std::string> entries() const;
  void opened();
  void closed();
  size_t open_count() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> entries_;
  size_t open_ = 0;
};

class ModuleProbe;

class LoadError : public std::runtime_error {
 public:
  enum class Kind {
    MissingFile,
    UnsafePermissions,  // the file or its folder can be written by its group or other users
    TooLarge,
    CopyFailed,  // the memory file could not be made (memfd_create, write, seal, map)
    HashMismatch,
    NotSharedObject,
    CorruptElf,  // a header or range that does not fit the file, or another machine's library
    GnuUnique,   // STB_GNU_UNIQUE symbols: the library could never be unloaded
    ProbeFailed,  // loading it in the probe child threw, crashed, exited or hung
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
  // The path dlopen was given: /proc/self/fd/N of the sealed memory copy.
  const std::string& loaded_path() const { return loaded_path_; }

  // Clears the descriptor, then dlclose + link-map check + close the memory copy.
  // Returns true when the library is unmapped; false (and recorded as leaked)
  // when dlclose fails or the library stays mapped. Idempotent; the destructor
  // calls it.
  bool close();

 private:
  friend class LibraryLoader;
  LoadedLibrary(std::shared_ptr<LeakLog> leaks, os::OsSysCalls& os, void* handle, boost::filesystem::path source,
                os::Fd memory_file, std::string loaded_path);
  [[noreturn]] void refuse_closed() const;

  std::shared_ptr<LeakLog> leaks_;
  os::OsSysCalls& os_;
  void* handle_;
  bool closed_ = false;
  boost::filesystem::path source_;
  os::Fd memory_file_;
  std::string loaded_path_;
  hotswap_module_descriptor descriptor_{};
  std::string name_;
  std::string version_;
};

// Calls the library's entry symbol and checks the descriptor it returns (ABI
// range, size, required fields, the expected name and version). Returns a copy
// in which fields past the module's struct_size are zero; its pointers point
// into the library. Throws LoadError naming `display`. Shared with the probe child.
hotswap_module_descriptor read_module_descriptor(os::OsSysCalls& os, void* handle, const std::string& display,
                                                 const LoadExpectation& expect);

// "1..1": the module ABIs this host loads, HOTSWAP_ABI_VERSION_MIN to
// HOTSWAP_ABI_VERSION, as messages show them.
std::string supported_module_abis();

// The ABI tag of the module library `file` (module.h, HOTSWAP_ABI_SYMBOL),
// read from the file without loading it; nullopt when the library has none.
// For planning an upgrade: throws LoadError naming the file when it cannot be
// read, is not a regular file (a FIFO does not block it), is larger than
// LibraryLoader::kMaxLibraryBytes or is not a loadable shared object (a load
// of it would fail the same way).
std::optional<uint32_t> read_module_abi_tag(const boost::filesystem::path& file);

// The LoadError for a failed dlopen of `display` (UnresolvedSymbol or DlopenFailed).
LoadError dlopen_failure(const std::string& display, const std::string& dlerror_text);

class LibraryLoader {
 public:
  // Largest library accepted (the memory copy holds all of it).
  static constexpr uint64_t kMaxLibraryBytes = uint64_t{512} << 20;

  // `run_dir`, when given, is the host's run folder: loaders before the memory
  // files copied libraries to `hotswap-modules-*` folders there, and a host
  // that died left them behind; they are removed now (call it only under the
  // root's pid lock). `probe`, when given, loads every library in a child
  // first (nullptr: no probe, as in unit tests and benchmarks). `os` must
  // outlive the loader and every library it loads.
  explicit LibraryLoader(const boost::filesystem::path& run_dir = {}, os::OsSysCalls& os = os::real_os_sys_calls(),
                         std::shared_ptr<ModuleProbe> probe = nullptr);
  ~LibraryLoader();
  LibraryLoader(const LibraryLoader&) = delete;
  LibraryLoader& operator=(const LibraryLoader&) = delete;

  // Throws LoadError naming the file and what was wrong. One thread at a time.
  std::shared_ptr<LoadedLibrary> load(const boost::filesystem::path& file, const LoadExpectation& expect = {});

  // Libraries that stayed mapped after close ("name version (path)").
  std::vector<std::string> leaked() const { return leaks_->entries(); }
  // Libraries loaded and not closed yet.
  size_t open_count() const { return leaks_->open_count(); }
  // The stale scratch folders removed at construction.
  const std::vector<boost::filesystem::path>& removed_stale() const { return removed_stale_; }

 private:
  os::Fd copy_to_sealed_memory(const boost::filesystem::path& file, const LoadExpectation& expect);
  // Returns the library's ABI tag (ElfImageFacts::module_abi).
  std::optional<uint32_t> check_memory_copy(int memory_file, const boost::filesystem::path& file,
                                            const LoadExpectation& expect);

  os::OsSysCalls& os_;
  std::shared_ptr<ModuleProbe> probe_;
  std::vector<boost::filesystem::path> removed_stale_;
  std::vector<unsigned char> buffer_;  // the library's bytes during a load (reused: one thread at a time)
  std::shared_ptr<LeakLog> leaks_ = std::make_shared<LeakLog>();
};

}  // namespace hotswap::host
