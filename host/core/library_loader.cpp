#include "core/library_loader.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/filesystem/operations.hpp>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>
#include <utility>

#include "core/elf_image.hpp"
#include "core/module_call.hpp"
#include "core/module_probe.hpp"
#include "core/sha256.hpp"
#include "os/fd.hpp"

namespace fs = boost::filesystem;

namespace hotswap::host {
namespace {

// The descriptor size of ABI version 1: everything up to and including on_stop.
constexpr size_t kDescriptorSizeV1 = offsetof(hotswap_module_descriptor, on_stop) + sizeof(void*);

// MFD_EXEC (Linux 6.3): says the memory file will be mapped executable, so a
// kernel set to make memory files non-executable by default still lets dlopen
// map it. Older kernels refuse the unknown flag with EINVAL; then it is not needed.
constexpr unsigned int kMfdExec = 0x0010U;

constexpr int kSeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

// Reads and writes until `size` bytes moved; EINTR retried. Returns the
// failed call's result, or an ok one.
template <typename Call>
os::SysCallSizeResult move_all(size_t size, Call call) {
  for (size_t done = 0; done < size;) {
    const os::SysCallSizeResult moved = call(done);
    if (!moved.ok() && moved.error == EINTR) continue;
    if (!moved.ok()) return moved;
    if (moved.value == 0) return {static_cast<ssize_t>(done), 0};
    done += static_cast<size_t>(moved.value);
  }
  return {static_cast<ssize_t>(size), 0};
}

// The load buffer is kept between loads up to this size.
constexpr size_t kKeptBufferBytes = size_t{64} << 20;

constexpr mode_t kWritableByOthers = S_IWGRP | S_IWOTH;

std::string who_can_write(mode_t mode) {
  if ((mode & S_IWGRP) != 0 && (mode & S_IWOTH) != 0) return "its group and other users";
  return (mode & S_IWGRP) != 0 ? "its group" : "other users";
}

std::string proc_fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// Opens a module file for reading and fills `st` from the open descriptor:
// a regular file of at most kMaxLibraryBytes, or a LoadError naming it.
// O_NONBLOCK: a FIFO named as a module (or swapped in for one) must not block
// the open; it is refused here. It changes nothing for a regular file's reads.
os::Fd open_module_file(const fs::path& file, os::OsSysCalls& os, struct stat& st) {
  using Kind = LoadError::Kind;
  const os::SysCallIntResult opened = os.open(file.string(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (!opened.ok() && opened.error == ENOENT)
    throw LoadError(Kind::MissingFile, "module file " + file.string() + " does not exist");
  if (!opened.ok()) throw LoadError(Kind::MissingFile, "cannot open " + file.string() + ": " + opened.error_text());
  os::Fd fd(opened, os);
  if (const os::SysCallIntResult got = os.fstat(fd.get(), st); !got.ok())
    throw LoadError(Kind::MissingFile, "cannot stat " + file.string() + ": " + got.error_text());
  if (!S_ISREG(st.st_mode))
    throw LoadError(Kind::NotSharedObject, "module file " + file.string() + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > LibraryLoader::kMaxLibraryBytes)
    throw LoadError(Kind::TooLarge, "refusing " + file.string() + ": " + std::to_string(st.st_size) +
                                        " bytes, more than the " + std::to_string(LibraryLoader::kMaxLibraryBytes) +
                                        " a module library may have");
  return fd;
}

[[noreturn]] void refuse_elf(const fs::path& file, const ElfImageError& e) {
  using Kind = LoadError::Kind;
  switch (e.kind()) {
    case ElfImageError::Kind::NotElf:
    case ElfImageError::Kind::NotSharedObject:
      throw LoadError(Kind::NotSharedObject, file.string() + " is " + e.what());
    case ElfImageError::Kind::GnuUnique:
      throw LoadError(Kind::GnuUnique, "refusing " + file.string() + ": " + e.what());
    case ElfImageError::Kind::WrongTarget:
    case ElfImageError::Kind::Corrupt:
      break;
  }
  throw LoadError(Kind::CorruptElf, "refusing " + file.string() + ": corrupt or foreign ELF image: " + e.what());
}

// Removes the `hotswap-modules-*` folders under `run_dir` (each held disk
// copies of libraries, before loading from memory). Best effort: a failure is logged.
std::vector<fs::path> remove_stale_scratch_folders(const fs::path& run_dir) {
  std::vector<fs::path> removed;
  boost::system::error_code ec;
  if (run_dir.empty() || !fs::is_directory(run_dir, ec)) return removed;
  for (fs::directory_iterator it(run_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path path = it->path();
    if (path.filename().string().rfind("hotswap-modules-", 0) != 0) continue;
    if (!fs::is_directory(fs::symlink_status(path, ec))) continue;
    boost::system::error_code removing;
    const uintmax_t files = fs::remove_all(path, removing);
    if (removing) {
      spdlog::warn("cannot remove the stale module folder {}: {}", path.string(), removing.message());
      continue;
    }
    spdlog::info("removed the stale module folder {} ({} entries) left by an earlier host", path.string(), files);
    removed.push_back(path);
  }
  return removed;
}

}  // namespace

void LeakLog::record(std::string what, os::Fd memory_file) {
  // Never closed: released, its number stays taken for the process's life.
  memory_file.release();
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.push_back(std::move(what));
}

std::vector<std::string> LeakLog::entries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_;
}

void LeakLog::opened() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++open_;
}

void LeakLog::closed() {
  std::lock_guard<std::mutex> lock(mutex_);
  --open_;
}

size_t LeakLog::open_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return open_;
}

LoadedLibrary::LoadedLibrary(std::shared_ptr<LeakLog> leaks, os::OsSysCalls& os, void* handle, fs::path source,
                             os::Fd memory_file, std::string loaded_path)
    : leaks_(std::move(leaks)),
      os_(os),
      handle_(handle),
      source_(std::move(source)),
      memory_file_(std::move(memory_file)),
      loaded_path_(std::move(loaded_path)) {
  leaks_->opened();
}

LoadedLibrary::~LoadedLibrary() { close(); }

void LoadedLibrary::refuse_closed() const {
  throw std::logic_error("module library " + name_ + " " + version_ +
                         " was closed: its descriptor points into unmapped code");
}

bool LoadedLibrary::close() {
  if (handle_ == nullptr) return true;
  // Forgotten before dlclose: from here on nothing can reach the library's code.
  closed_ = true;
  descriptor_ = {};
  leaks_->closed();
  const os::DlResult<int> closed = os_.dlclose(std::exchange(handle_, nullptr));
  std::string why;
  if (!closed.ok()) {
    why = "dlclose failed (" + closed.error + "); it may still be mapped";
  } else if (os_.dl_is_loaded(loaded_path_)) {
    why =
        "stayed mapped after unload (thread_local destructors, STB_GNU_UNIQUE symbols or a dangling reference "
        "keep it)";
  }
  if (why.empty()) {
    memory_file_.close();
    return true;
  }
  std::string what = name_ + " " + version_ + " (" + source_.string() + " as " + loaded_path_ + ")";
  spdlog::warn("module library {} {}; it will never be reused", what, why);
  // Its memory file stays open: were its descriptor number reused, dlopen
  // would take the new path for this library's, which it still knows by name.
  leaks_->record(std::move(what), std::move(memory_file_));
  return false;
}

std::string supported_module_abis() {
  return std::to_string(HOTSWAP_ABI_VERSION_MIN) + ".." + std::to_string(HOTSWAP_ABI_VERSION);
}

namespace {
// Refuses a module ABI outside [HOTSWAP_ABI_VERSION_MIN, HOTSWAP_ABI_VERSION].
void check_abi_supported(const std::string& display, uint32_t abi) {
  const std::string supported = supported_module_abis();
  if (abi > HOTSWAP_ABI_VERSION)
    throw LoadError(LoadError::Kind::AbiTooNew, display + " was built for module ABI " + std::to_string(abi) +
                                                    ", newer than this host supports (" + supported + ")");
  if (abi < HOTSWAP_ABI_VERSION_MIN)
    throw LoadError(LoadError::Kind::AbiTooOld, display + " was built for module ABI " + std::to_string(abi) +
                                                    ", older than this host supports (" + supported + ")");
}
}  // namespace

LoadError dlopen_failure(const std::string& display, const std::string& dlerror_text) {
  if (dlerror_text.find("undefined symbol") != std::string::npos)
    return LoadError(LoadError::Kind::UnresolvedSymbol, "cannot load " + display + ": unresolved symbol: " + dlerror_text);
  return LoadError(LoadError::Kind::DlopenFailed, "cannot load " + display + ": dlopen failed: " + dlerror_text);
}

hotswap_module_descriptor read_module_descriptor(os::OsSysCalls& os, void* handle, const std::string& display,
                                                 const LoadExpectation& expect) {
  using Kind = LoadError::Kind;
  const os::DlResult<void*> symbol = os.dlsym(handle, HOTSWAP_ENTRY_SYMBOL);
  if (!symbol.ok())
    throw LoadError(Kind::MissingEntry, display + " has no entry symbol " HOTSWAP_ENTRY_SYMBOL
                                                  ": it was not built as a hotswap module (HOTSWAP_MODULE macro)");
  auto entry = reinterpret_cast<hotswap_entry_fn>(symbol.value);
  const hotswap_module_descriptor* d = nullptr;
  if (call_module(nullptr, [&] {
        d = entry();
        return HOTSWAP_OK;
      }) != HOTSWAP_OK)
    throw LoadError(Kind::BadDescriptor, display + ": the entry symbol " + kThrewAcrossAbi);
  if (d == nullptr) throw LoadError(Kind::BadDescriptor, display + ": the entry symbol returned no descriptor");
  check_abi_supported(display, d->abi_version);
  if (d->struct_size < kDescriptorSizeV1)
    throw LoadError(Kind::BadDescriptor, display + ": descriptor is " + std::to_string(d->struct_size) +
                                             " bytes, ABI 1 needs at least " + std::to_string(kDescriptorSizeV1));
  // Read by size: fields the module does not know about stay zero.
  hotswap_module_descriptor desc{};
  std::memcpy(&desc, d, std::min<size_t>(d->struct_size, sizeof(hotswap_module_descriptor)));
  if (desc.name == nullptr || desc.version == nullptr || desc.create == nullptr || desc.destroy == nullptr)
    throw LoadError(Kind::BadDescriptor, display + ": descriptor lacks a name, version, create or destroy");
  const std::string name = desc.name;
  const std::string version = desc.version;
  if (!expect.name.empty() && name != expect.name)
    throw LoadError(Kind::NameMismatch, display + " is module '" + name + "', expected '" + expect.name + "'");
  if (!expect.version.empty() && version != expect.version)
    throw LoadError(Kind::VersionMismatch,
                    display + " is " + name + " version " + version + ", expected " + expect.version);
  return desc;
}

LibraryLoader::LibraryLoader(const fs::path& run_dir, os::OsSysCalls& os, std::shared_ptr<ModuleProbe> probe)
    : os_(os), probe_(std::move(probe)), removed_stale_(remove_stale_scratch_folders(run_dir)) {}

LibraryLoader::~LibraryLoader() = default;

os::Fd LibraryLoader::copy_to_sealed_memory(const fs::path& file, const LoadExpectation& expect) {
  using Kind = LoadError::Kind;
  struct stat st {};  // of the file that is read, not of whatever the path names by now
  const os::Fd source = open_module_file(file, os_, st);
  if ((st.st_mode & kWritableByOthers) != 0)
    throw LoadError(Kind::UnsafePermissions,
                    "refusing " + file.string() + ": " + who_can_write(st.st_mode) + " can write it (mode " +
                        [&] {
                          char mode[8];
                          std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
                          return std::string(mode);
                        }() +
                        "); make it writable by its owner only");
  const fs::path folder = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  struct stat folder_st {};
  if (os_.stat(folder.string(), folder_st).ok() && (folder_st.st_mode & kWritableByOthers) != 0)
    throw LoadError(Kind::UnsafePermissions, "refusing " + file.string() + ": " + who_can_write(folder_st.st_mode) +
                                                 " can write its folder " + folder.string());

  const std::string base = expect.name.empty() ? file.stem().string() : expect.name + "-" + expect.version;
  const std::string memory_name = "hotswap:" + base.substr(0, 200);
  os::SysCallIntResult created = os_.memfd_create(memory_name, MFD_CLOEXEC | MFD_ALLOW_SEALING | kMfdExec);
  if (!created.ok() && created.error == EINVAL)
    created = os_.memfd_create(memory_name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (!created.ok())
    throw LoadError(Kind::CopyFailed,
                    "cannot load " + file.string() + ": memfd_create failed: " + created.error_text());
  os::Fd memory(created, os_);

  // The file is read whole into the loader's buffer (kept between loads: a
  // fresh one would cost a page fault per page), written into the memory file.
  const size_t size = static_cast<size_t>(st.st_size);
  buffer_.resize(size + 1);  // one byte more: a file that grew since fstat is seen
  const os::SysCallSizeResult got =
      move_all(size + 1, [&](size_t done) { return os_.read(source.get(), buffer_.data() + done, size + 1 - done); });
  if (!got.ok()) throw LoadError(Kind::CopyFailed, "cannot read " + file.string() + ": " + got.error_text());
  if (static_cast<size_t>(got.value) != size)
    throw LoadError(Kind::CopyFailed, "cannot read " + file.string() + ": it changed size while being read");
  const os::SysCallSizeResult put =
      move_all(size, [&](size_t done) { return os_.write(memory.get(), buffer_.data() + done, size - done); });
  if (!put.ok())
    throw LoadError(Kind::CopyFailed, "cannot copy " + file.string() + " into memory: " + put.error_text());
  // Sealed before it is hashed: no one (this process included) can change what was hashed.
  if (const os::SysCallIntResult sealed = os_.add_seals(memory.get(), kSeals); !sealed.ok())
    throw LoadError(Kind::CopyFailed,
                    "cannot load " + file.string() + ": sealing its memory copy failed: " + sealed.error_text());
  return memory;
}

std::optional<uint32_t> LibraryLoader::check_memory_copy(int memory_file, const fs::path& file,
                                                         const LoadExpectation& expect) {
  using Kind = LoadError::Kind;
  struct stat st {};
  if (const os::SysCallIntResult got = os_.fstat(memory_file, st); !got.ok())
    throw LoadError(Kind::CopyFailed, "cannot stat the memory copy of " + file.string() + ": " + got.error_text());
  // Read back from the sealed file: what is hashed and checked is what dlopen will map.
  const size_t size = static_cast<size_t>(st.st_size);
  buffer_.resize(size);
  const os::SysCallSizeResult got = move_all(size, [&](size_t done) {
    return os_.pread(memory_file, buffer_.data() + done, size - done, static_cast<off_t>(done));
  });
  if (!got.ok() || static_cast<size_t>(got.value) != size)
    throw LoadError(Kind::CopyFailed, "cannot read back the memory copy of " + file.string() + ": " +
                                          (got.ok() ? std::string("short read") : got.error_text()));
  const unsigned char* bytes = buffer_.data();
  if (!expect.sha256.empty()) {
    const std::string actual = sha256_bytes(bytes, size);
    if (actual != expect.sha256)
      throw LoadError(Kind::HashMismatch, "sha256 of " + file.string() + " is " + actual + ", the manifest says " +
                                              expect.sha256 + ": the file was changed after the release was built");
  }
  try {
    return check_elf_image(bytes, size).module_abi;
  } catch (const ElfImageError& e) {
    refuse_elf(file, e);
  }
}

std::optional<uint32_t> read_module_abi_tag(const fs::path& file) {
  using Kind = LoadError::Kind;
  struct stat st {};
  const os::Fd fd = open_module_file(file, os::real_os_sys_calls(), st);
  std::vector<unsigned char> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw LoadError(Kind::MissingFile, "cannot read " + file.string() + ": " + std::strerror(errno));
    if (got == 0) break;  // shrunk meanwhile: the ELF check sees the bytes there are
    done += static_cast<size_t>(got);
  }
  bytes.resize(done);
  try {
    return check_elf_image(bytes.data(), bytes.size()).module_abi;
  } catch (const ElfImageError& e) {
    refuse_elf(file, e);
  }
}

std::shared_ptr<LoadedLibrary> LibraryLoader::load(const fs::path& file, const LoadExpectation& expect) {
  os::Fd memory = copy_to_sealed_memory(file, expect);
  const std::optional<uint32_t> abi_tag = check_memory_copy(memory.get(), file, expect);
  if (buffer_.capacity() > kKeptBufferBytes) std::vector<unsigned char>().swap(buffer_);  // do not hold a huge one
  // Refused before any of its code runs (its static constructors run inside dlopen).
  if (abi_tag) check_abi_supported(file.string() + " (by its ABI tag)", *abi_tag);
  if (probe_) probe_->probe(memory.get(), file, expect);

  // The memory file stays open while the library is loaded: its path cannot name another library meanwhile.
  std::string path = proc_fd_path(memory.get());
  const os::DlResult<void*> opened = os_.dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!opened.ok()) throw dlopen_failure(file.string(), opened.error);
  std::shared_ptr<LoadedLibrary> lib(
      new LoadedLibrary(leaks_, os_, opened.value, file, std::move(memory), std::move(path)));
  lib->descriptor_ = read_module_descriptor(os_, opened.value, file.string(), expect);
  lib->name_ = lib->descriptor_.name;
  lib->version_ = lib->descriptor_.version;
  return lib;
}

}  // namespace hotswap::host
