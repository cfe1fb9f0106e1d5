#include "core/library_loader.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/filesystem/operations.hpp>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

#include "core/module_call.hpp"
#include "core/sha256.hpp"
#include "os/fd.hpp"

namespace fs = boost::filesystem;

namespace hotswap::host {
namespace {

// The descriptor size of ABI version 1: everything up to and including on_stop.
constexpr size_t kDescriptorSizeV1 = offsetof(hotswap_module_descriptor, on_stop) + sizeof(void*);

bool writable_by_others(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return false;
  return (st.st_mode & S_IWOTH) != 0;
}

// Reads the ELF header: dlopen's own message for a text file ("invalid ELF header")
// is less helpful than saying what the file is not.
void check_elf_shared_object(os::OsSysCalls& os, const fs::path& file) {
  const os::SysCallIntResult opened = os.open(file.string(), O_RDONLY | O_CLOEXEC);
  if (!opened.ok())
    throw LoadError(LoadError::Kind::MissingFile, "cannot open " + file.string() + ": " + opened.error_text());
  os::Fd fd(opened, os);
  unsigned char header[18] = {};
  const os::SysCallSizeResult got = os.read(fd.get(), header, sizeof header);
  bool elf = got.value == static_cast<ssize_t>(sizeof header) && header[0] == 0x7f && header[1] == 'E' &&
             header[2] == 'L' && header[3] == 'F';
  if (!elf) throw LoadError(LoadError::Kind::NotSharedObject, file.string() + " is not an ELF file");
  unsigned e_type = header[16] | (header[17] << 8);  // little-endian hosts only (x86_64, aarch64)
  if (e_type != 3 /* ET_DYN */)
    throw LoadError(LoadError::Kind::NotSharedObject, file.string() + " is an ELF file but not a shared object");
}

}  // namespace

void LeakLog::record(std::string what) {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.push_back(std::move(what));
}

std::vector<std::string> LeakLog::entries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_;
}

LoadedLibrary::LoadedLibrary(std::shared_ptr<LeakLog> leaks, os::OsSysCalls& os, void* handle, fs::path source,
                             fs::path copy)
    : leaks_(std::move(leaks)), os_(os), handle_(handle), source_(std::move(source)), copy_(std::move(copy)) {}

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
  const os::DlResult<int> closed = os_.dlclose(std::exchange(handle_, nullptr));
  std::string why;
  if (!closed.ok()) {
    why = "dlclose failed (" + closed.error + "); it may still be mapped";
  } else if (const os::DlResult<void*> still = os_.dlopen(copy_.string(), RTLD_NOW | RTLD_NOLOAD); still.ok()) {
    os_.dlclose(still.value);
    why =
        "stayed mapped after unload (thread_local destructors, STB_GNU_UNIQUE symbols or a dangling reference "
        "keep it)";
  }
  if (!why.empty()) {
    std::string what = name_ + " " + version_ + " (" + copy_.string() + ")";
    spdlog::warn("module library {} {}; it will never be reused", what, why);
    leaks_->record(std::move(what));
  }
  boost::system::error_code ec;
  fs::remove(copy_, ec);
  return why.empty();
}

LibraryLoader::LibraryLoader(const fs::path& scratch_parent, os::OsSysCalls& os) : os_(os) {
  fs::path parent = scratch_parent.empty() ? fs::temp_directory_path() : scratch_parent;
  fs::create_directories(parent);
  std::string pattern = (parent / "hotswap-modules-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error("cannot create a module scratch folder under " + parent.string() + ": " +
                             std::strerror(errno));
  scratch_dir_ = pattern;  // mkdtemp creates it with mode 0700
}

LibraryLoader::~LibraryLoader() {
  boost::system::error_code ec;
  fs::remove_all(scratch_dir_, ec);
}

std::shared_ptr<LoadedLibrary> LibraryLoader::load(const fs::path& file, const LoadExpectation& expect) {
  using Kind = LoadError::Kind;
  boost::system::error_code ec;
  if (!fs::exists(file, ec)) throw LoadError(Kind::MissingFile, "module file " + file.string() + " does not exist");
  if (!fs::is_regular_file(file, ec))
    throw LoadError(Kind::NotSharedObject, "module file " + file.string() + " is not a regular file");
  if (writable_by_others(file))
    throw LoadError(Kind::UnsafePermissions, "refusing " + file.string() + ": other users can write it");
  if (writable_by_others(file.parent_path()))
    throw LoadError(Kind::UnsafePermissions,
                    "refusing " + file.string() + ": other users can write its folder " + file.parent_path().string());
  if (!expect.sha256.empty()) {
    std::string actual = sha256_file(file);
    if (actual != expect.sha256)
      throw LoadError(Kind::HashMismatch, "sha256 of " + file.string() + " is " + actual + ", the manifest says " +
                                              expect.sha256 + ": the file was changed after the release was built");
  }
  check_elf_shared_object(os_, file);

  // A fresh path per load: dlopen would hand back an already-loaded library for a known path.
  std::string base = expect.name.empty() ? file.stem().string() : expect.name + "-" + expect.version;
  fs::path copy = scratch_dir_ / (base + "." + std::to_string(::getpid()) + "." + std::to_string(next_copy_++) + ".so");
  fs::copy_file(file, copy, fs::copy_option::fail_if_exists);
  fs::permissions(copy, fs::owner_read | fs::owner_exe);

  const os::DlResult<void*> opened = os_.dlopen(copy.string(), RTLD_NOW | RTLD_LOCAL);
  if (!opened.ok()) {
    fs::remove(copy, ec);
    if (opened.error.find("undefined symbol") != std::string::npos)
      throw LoadError(Kind::UnresolvedSymbol, "cannot load " + file.string() + ": unresolved symbol: " + opened.error);
    throw LoadError(Kind::DlopenFailed, "cannot load " + file.string() + ": dlopen failed: " + opened.error);
  }
  std::shared_ptr<LoadedLibrary> lib(new LoadedLibrary(leaks_, os_, opened.value, file, copy));

  const os::DlResult<void*> symbol = os_.dlsym(opened.value, HOTSWAP_ENTRY_SYMBOL);
  if (!symbol.ok())
    throw LoadError(Kind::MissingEntry, file.string() +
                                            " has no entry symbol " HOTSWAP_ENTRY_SYMBOL
                                            ": it was not built as a hotswap module (HOTSWAP_MODULE macro)");
  auto entry = reinterpret_cast<hotswap_entry_fn>(symbol.value);
  const hotswap_module_descriptor* d = nullptr;
  if (call_module(nullptr, [&] {
        d = entry();
        return HOTSWAP_OK;
      }) != HOTSWAP_OK)
    throw LoadError(Kind::BadDescriptor, file.string() + ": the entry symbol " + kThrewAcrossAbi);
  if (d == nullptr) throw LoadError(Kind::BadDescriptor, file.string() + ": the entry symbol returned no descriptor");
  std::string supported = std::to_string(HOTSWAP_ABI_VERSION_MIN) + ".." + std::to_string(HOTSWAP_ABI_VERSION);
  if (d->abi_version > HOTSWAP_ABI_VERSION)
    throw LoadError(Kind::AbiTooNew, file.string() + " was built for module ABI " + std::to_string(d->abi_version) +
                                         ", newer than this host supports (" + supported + ")");
  if (d->abi_version < HOTSWAP_ABI_VERSION_MIN)
    throw LoadError(Kind::AbiTooOld, file.string() + " was built for module ABI " + std::to_string(d->abi_version) +
                                         ", older than this host supports (" + supported + ")");
  if (d->struct_size < kDescriptorSizeV1)
    throw LoadError(Kind::BadDescriptor, file.string() + ": descriptor is " + std::to_string(d->struct_size) +
                                             " bytes, ABI 1 needs at least " + std::to_string(kDescriptorSizeV1));
  // Read by size: fields the module does not know about stay zero.
  std::memcpy(&lib->descriptor_, d, std::min<size_t>(d->struct_size, sizeof(hotswap_module_descriptor)));
  const hotswap_module_descriptor& desc = lib->descriptor_;
  if (desc.name == nullptr || desc.version == nullptr || desc.create == nullptr || desc.destroy == nullptr)
    throw LoadError(Kind::BadDescriptor, file.string() + ": descriptor lacks a name, version, create or destroy");
  lib->name_ = desc.name;
  lib->version_ = desc.version;
  if (!expect.name.empty() && lib->name_ != expect.name)
    throw LoadError(Kind::NameMismatch,
                    file.string() + " is module '" + lib->name_ + "', expected '" + expect.name + "'");
  if (!expect.version.empty() && lib->version_ != expect.version)
    throw LoadError(Kind::VersionMismatch,
                    file.string() + " is " + lib->name_ + " version " + lib->version_ + ", expected " + expect.version);
  return lib;
}

}  // namespace hotswap::host
