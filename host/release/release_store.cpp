#include "release/release_store.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/filesystem/operations.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>
#include <hotswap/appup/manifest.hpp>
#include <hotswap/appup/semver.hpp>
#include <memory>
#include <random>

#include "core/sha256.hpp"
#include "os/fd.hpp"
#include "release/release_files.hpp"

namespace fs = boost::filesystem;
using nlohmann::json;

namespace hotswap::host {
namespace {

// What an unpacked release may weigh, and how many entries it may have: a
// release is a handful of modules, so a tarball over these is a mistake or an attack.
constexpr uint64_t kMaxUnpackedBytes = uint64_t(1) << 30;
constexpr size_t kMaxEntries = 100'000;
// Unpacked files keep their read and execute bits, never setuid/setgid/sticky
// and never group/other write (the loader refuses modules others can write).
constexpr mode_t kFileModeMask = 0755;
constexpr mode_t kFolderMode = 0755;
constexpr mode_t kRunFolderMode = 0700;  // admin.sock: only the owner may control the daemon

std::string errno_text() { return std::strerror(errno); }

// A fresh folder made by mkdtemp, deleted with its contents unless keep() is called.
class TempDir {
 public:
  TempDir(const fs::path& parent, const std::string& prefix) {
    std::string pattern = (parent / (prefix + "XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw ReleaseError("cannot create a temporary folder in " + parent.string() + ": " + errno_text());
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    boost::system::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  void keep() { path_.clear(); }

 private:
  fs::path path_;
};

// Writes all of `data`; the result of the failing write otherwise.
os::SysCallSizeResult write_all(os::OsSysCalls& os, int fd, const char* data, size_t size) {
  while (size > 0) {
    const os::SysCallSizeResult written = os.write(fd, data, size);
    if (!written.ok() && written.error == EINTR) continue;
    if (!written.ok()) return written;
    data += written.value;
    size -= size_t(written.value);
  }
  return {0, 0};
}

// fsync on a folder makes the names in it (a rename, a new entry) durable.
void sync_folder(os::OsSysCalls& os, const fs::path& folder) {
  const os::SysCallIntResult opened = os.open(folder.string(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (!opened.ok()) throw ReleaseError("cannot sync " + folder.string() + ": " + opened.error_text());
  os::Fd fd(opened, os);
  if (const os::SysCallIntResult synced = os.fsync(fd.get()); !synced.ok())
    throw ReleaseError("cannot sync " + folder.string() + ": " + synced.error_text());
}

// A new file `folder`/`prefix`XXXXXXXXXXXX that no other process or thread can
// have (O_EXCL, like mkstemp), so concurrent writers never share a temporary file.
os::Fd create_unique_file(os::OsSysCalls& os, const fs::path& folder, const std::string& prefix, mode_t mode,
                          fs::path& created) {
  static constexpr char kLetters[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 random{std::random_device{}()};
  std::uniform_int_distribution<size_t> pick(0, sizeof kLetters - 2);
  constexpr int kAttempts = 100;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::string name = prefix;
    for (int i = 0; i < 12; ++i) name += kLetters[pick(random)];
    const fs::path candidate = folder / name;
    const os::SysCallIntResult opened =
        os.open(candidate.string(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (opened.ok()) {
      created = candidate;
      return os::Fd(opened, os);
    }
    if (opened.error != EEXIST)
      throw ReleaseError("cannot create a temporary file in " + folder.string() + ": " + opened.error_text());
  }
  throw ReleaseError("cannot create a temporary file in " + folder.string() + ": every name tried exists");
}

// Creates `folder` with exactly `mode` (whatever the umask). An existing folder
// keeps its mode unless `enforce` says the mode matters for safety.
void make_folder(os::OsSysCalls& os, const fs::path& folder, mode_t mode, bool enforce) {
  const os::SysCallIntResult made = os.mkdir(folder.string(), mode);
  const bool created = made.ok();
  if (!created && made.error != EEXIST)
    throw ReleaseError("cannot create " + folder.string() + ": " + made.error_text());
  struct stat st {};
  if (::stat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw ReleaseError(folder.string() + " exists and is not a folder");
  if ((created || enforce) && (st.st_mode & 07777) != mode && ::chmod(folder.c_str(), mode) != 0)
    throw ReleaseError("cannot set the mode of " + folder.string() + ": " + errno_text());
}

bool older(const std::string& a, const std::string& b) {
  const int order = appup::compare(*appup::Version::parse(a), *appup::Version::parse(b));
  // Versions differing only in build metadata have the same precedence; keep a stable order anyway.
  return order != 0 ? order < 0 : a < b;
}

ReleaseState state_of(const std::string& version, const std::optional<std::string>& permanent,
                      const std::optional<std::string>& current, const std::vector<std::string>& old) {
  if (permanent == version) return ReleaseState::Permanent;
  if (current == version) return ReleaseState::Current;
  if (std::find(old.begin(), old.end(), version) != old.end()) return ReleaseState::Old;
  return ReleaseState::Unpacked;
}

void add_old(std::vector<std::string>& old, const std::string& version) {
  if (std::find(old.begin(), old.end(), version) == old.end()) old.push_back(version);
}

void drop_old(std::vector<std::string>& old, const std::string& version) {
  old.erase(std::remove(old.begin(), old.end(), version), old.end());
}

json version_or_null(const std::optional<std::string>& version) { return version ? json(*version) : json(nullptr); }

// ---- RELEASES.json -------------------------------------------------------------

// The bookkeeping is never reset silently: which release boots depends on it.
[[noreturn]] void corrupt(const fs::path& file, const std::string& why) {
  throw ReleaseError(file.string() + ": corrupt release bookkeeping: " + why +
                     " (repair or restore it; hotswap will not guess which release is permanent)");
}

std::string expect_version(const fs::path& file, const json& value, const std::string& key) {
  if (!value.is_string() || !appup::is_valid_version(value.get<std::string>()))
    corrupt(file, key + ": expected a release version, got " + value.dump());
  return value.get<std::string>();
}

std::optional<std::string> version_field(const fs::path& file, const json& document, const char* key) {
  const auto it = document.find(key);
  if (it == document.end()) corrupt(file, std::string("'") + key + "' is missing");
  if (it->is_null()) return std::nullopt;
  return expect_version(file, *it, key);
}

// Optional: RELEASES.json written before failed targets were recorded has none.
std::map<std::string, std::string> failed_field(const fs::path& file, const json& document) {
  std::map<std::string, std::string> failed;
  const auto it = document.find("failed");
  if (it == document.end() || it->is_null()) return failed;
  if (!it->is_object()) corrupt(file, "'failed' must be an object {version: error}");
  for (const auto& [version, error] : it->items()) {
    if (!appup::is_valid_version(version)) corrupt(file, "failed: '" + version + "' is not a release version");
    if (!error.is_string()) corrupt(file, "failed." + version + ": expected the error text, got " + error.dump());
    failed[version] = error.get<std::string>();
  }
  return failed;
}

std::vector<std::string> old_field(const fs::path& file, const json& document) {
  const auto it = document.find("old");
  if (it == document.end() || !it->is_array()) corrupt(file, "'old' must be an array of release versions");
  std::vector<std::string> old;
  for (size_t i = 0; i < it->size(); ++i)
    old.push_back(expect_version(file, (*it)[i], "old[" + std::to_string(i) + "]"));
  return old;
}

// ---- unpacking -----------------------------------------------------------------

using ArchiveReader = std::unique_ptr<archive, decltype(&archive_read_free)>;

[[noreturn]] void archive_failure(const fs::path& tarball, archive* reader) {
  const char* message = archive_error_string(reader);
  throw ReleaseError("tarball " + tarball.string() + ": " + (message ? message : "cannot read the archive"));
}

ArchiveReader open_tarball(const fs::path& tarball) {
  boost::system::error_code ec;
  if (!fs::is_regular_file(tarball, ec))
    throw ReleaseError("tarball " + tarball.string() + ": not found or not a regular file");
  ArchiveReader reader(archive_read_new(), &archive_read_free);
  if (!reader) throw ReleaseError("tarball " + tarball.string() + ": cannot allocate an archive reader");
  archive_read_support_filter_gzip(reader.get());
  archive_read_support_format_tar(reader.get());  // ustar, pax and GNU tar
  constexpr size_t kBlockSize = 64 * 1024;
  if (archive_read_open_filename(reader.get(), tarball.c_str(), kBlockSize) != ARCHIVE_OK)
    archive_failure(tarball, reader.get());
  return reader;
}

// Extracts a tarball into an empty folder. libarchive only reads: every file
// and folder is created here, after its path was checked, so nothing can land
// outside `top`, and nothing but plain files and folders is ever created.
class Unpacker {
 public:
  Unpacker(os::OsSysCalls& os, fs::path tarball, fs::path top)
      : os_(os), tarball_(std::move(tarball)), top_(std::move(top)) {}

  void run() {
    const ArchiveReader reader = open_tarball(tarball_);
    reader_ = reader.get();
    for (;;) {
      archive_entry* header = nullptr;
      const int status = archive_read_next_header(reader_, &header);
      if (status == ARCHIVE_EOF) return;
      if (status != ARCHIVE_OK && status != ARCHIVE_WARN) archive_failure(tarball_, reader_);
      unpack_entry(header);
    }
  }

 private:
  [[noreturn]] void refuse(const std::string& entry, const std::string& why) const {
    throw ReleaseError("tarball " + tarball_.string() + ": entry '" + entry + "': " + why);
  }

  void unpack_entry(archive_entry* header) {
    const char* name = archive_entry_pathname(header);
    if (name == nullptr) throw ReleaseError("tarball " + tarball_.string() + ": an entry has no path");
    const std::string entry = name;
    if (++entries_ > kMaxEntries) refuse(entry, "more than " + std::to_string(kMaxEntries) + " entries");
    const fs::path inner = inner_path(entry);
    if (const char* target = archive_entry_hardlink(header))
      refuse(entry, std::string("hard link to '") + target + "'; only files and folders are allowed");
    switch (archive_entry_filetype(header)) {
      case AE_IFREG:
        return unpack_file(header, entry, inner);
      case AE_IFDIR:
        return make_folders(entry, inner);
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(header);
        refuse(entry,
               "symbolic link to '" + std::string(target ? target : "") + "'; only files and folders are allowed");
      }
      default:
        refuse(entry, "a device, fifo or socket; only files and folders are allowed");
    }
  }

  // The entry's path inside the release folder. Refuses absolute paths and "..";
  // drops "." components ("./manifest.json"). Empty for the top folder itself ("./").
  fs::path inner_path(const std::string& entry) const {
    if (entry.empty()) refuse(entry, "empty path");
    if (entry.front() == '/') refuse(entry, "absolute path; a release unpacks inside its own folder");
    fs::path inner;
    for (size_t start = 0; start <= entry.size();) {
      const size_t end = std::min(entry.find('/', start), entry.size());
      const std::string part = entry.substr(start, end - start);
      if (part == "..") refuse(entry, "contains '..'; a release unpacks inside its own folder");
      if (!part.empty() && part != ".") inner /= part;
      start = end + 1;
    }
    return inner;
  }

  // Creates the folders of `inner`, each 0755. No path under top_ can be a
  // symbolic link (none is ever created), so this stays inside.
  void make_folders(const std::string& entry, const fs::path& inner) const {
    fs::path folder = top_;
    for (const fs::path& part : inner) {
      folder /= part;
      const os::SysCallIntResult made = os_.mkdir(folder.string(), kFolderMode);
      if (made.ok()) {
        if (::chmod(folder.c_str(), kFolderMode) != 0) refuse(entry, "cannot set a folder's mode: " + errno_text());
        continue;
      }
      struct stat st {};
      if (made.error != EEXIST || ::lstat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        refuse(entry, "cannot create folder " + part.string() + ": " + made.error_text());
    }
  }

  // O_EXCL refuses an entry that appears twice, O_NOFOLLOW any link.
  void unpack_file(archive_entry* header, const std::string& entry, const fs::path& inner) {
    if (inner.empty()) refuse(entry, "a file without a name");
    if (archive_entry_size(header) > int64_t(kMaxUnpackedBytes - bytes_)) refuse(entry, kTooLarge);
    make_folders(entry, inner.parent_path());
    const fs::path target = top_ / inner;
    const os::SysCallIntResult opened =
        os_.open(target.string(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (!opened.ok()) refuse(entry, opened.error == EEXIST ? "appears twice" : "cannot create: " + opened.error_text());
    os::Fd fd(opened, os_);
    copy_data(fd.get(), entry);
    if (const os::SysCallIntResult set = os_.fchmod(fd.get(), archive_entry_perm(header) & kFileModeMask); !set.ok())
      refuse(entry, "cannot set its mode: " + set.error_text());
    // close() reports a write error the file system deferred.
    if (const os::SysCallIntResult closed = fd.close(); !closed.ok())
      refuse(entry, "cannot write: " + closed.error_text());
  }

  // Counts what is really written, whatever the header claimed.
  void copy_data(int fd, const std::string& entry) {
    char buffer[64 * 1024];
    for (;;) {
      const la_ssize_t got = archive_read_data(reader_, buffer, sizeof buffer);
      if (got < 0) archive_failure(tarball_, reader_);
      if (got == 0) return;
      bytes_ += uint64_t(got);
      if (bytes_ > kMaxUnpackedBytes) refuse(entry, kTooLarge);
      if (const os::SysCallSizeResult written = write_all(os_, fd, buffer, size_t(got)); !written.ok())
        refuse(entry, "cannot write: " + written.error_text());
    }
  }

  static constexpr const char* kTooLarge = "the release would unpack to more than 1 GiB";

  os::OsSysCalls& os_;
  fs::path tarball_, top_;
  archive* reader_ = nullptr;  // owned by run()
  uint64_t bytes_ = 0;
  size_t entries_ = 0;
};

std::string relative_name(const fs::path& file, const fs::path& top) { return file.lexically_relative(top).string(); }

// Parses a module's appup as the planner will (bounded JSON, every version
// pattern compiled), so that a malformed or hostile appup is refused at unpack
// with the file and field, never met first by an upgrade.
void check_appup(const appup::ModuleEntry& module, const fs::path& top, const fs::path& tarball) {
  const std::string where = "tarball " + tarball.string() + ": " + relative_name(module.appup, top);
  appup::Appup parsed;
  try {
    parsed = load_appup(module.appup);
  } catch (const appup::InputError& e) {
    const std::string field = e.field().empty() ? "" : e.field() + ": ";
    throw ReleaseError(where + ": invalid appup: " + field + e.problem());
  }
  if (parsed.module != module.name || parsed.version != module.version)
    throw ReleaseError(where + ": is the appup of " + parsed.module + " " + parsed.version +
                       ", but manifest.json ships it with module " + module.name + " " + module.version);
}

// load_manifest checks the manifest's own fields; this checks that the files it
// names came with the tarball, so a broken release is refused now rather than
// at the upgrade that needs it.
void check_release_files(os::OsSysCalls& os, const appup::ReleaseManifest& manifest, const fs::path& tarball) {
  const auto missing = [&](const fs::path& file, const std::string& what) {
    boost::system::error_code ec;
    if (!fs::is_regular_file(file, ec))
      throw ReleaseError("tarball " + tarball.string() + ": manifest.json names " + what + " " +
                         relative_name(file, manifest.dir) + ", which the tarball does not contain");
  };
  for (const appup::ModuleEntry& module : manifest.modules) {
    missing(module.file, "the library of module '" + module.name + "'");
    if (sha256_file(module.file, os) != module.sha256)
      throw ReleaseError("tarball " + tarball.string() + ": " + relative_name(module.file, manifest.dir) +
                         " does not match the sha256 in manifest.json");
    if (!module.appup.empty()) {
      missing(module.appup, "the appup of module '" + module.name + "'");
      check_appup(module, manifest.dir, tarball);
    }
  }
  if (!manifest.config.empty()) missing(manifest.config, "the runtime config");
}

appup::ReleaseManifest read_unpacked_manifest(os::OsSysCalls& os, const fs::path& top, const fs::path& tarball) {
  boost::system::error_code ec;
  if (!fs::is_regular_file(top / "manifest.json", ec))
    throw ReleaseError("tarball " + tarball.string() +
                       ": no manifest.json at its top level (make release tarballs with hotswap_add_release)");
  try {
    appup::ReleaseManifest manifest =
        appup::parse_manifest(read_json_file(top / "manifest.json", os), top, (top / "manifest.json").string());
    check_release_files(os, manifest, tarball);
    return manifest;
  } catch (const appup::InputError& e) {
    // e.what() names the temporary folder, which is about to vanish.
    const std::string where = e.field().empty() ? "" : e.field() + ": ";
    throw ReleaseError("tarball " + tarball.string() + ": invalid manifest: manifest.json: " + where + e.problem());
  }
}

}  // namespace

void unpack_release_tarball(const fs::path& tarball, const fs::path& into, os::OsSysCalls& os) {
  Unpacker(os, tarball, into).run();
}

const char* to_string(ReleaseState state) {
  switch (state) {
    case ReleaseState::Unpacked:
      return "unpacked";
    case ReleaseState::Current:
      return "current";
    case ReleaseState::Permanent:
      return "permanent";
    case ReleaseState::Old:
      return "old";
  }
  return "unknown";
}

ReleaseStore::ReleaseStore(fs::path root, os::OsSysCalls& os) : root_(fs::absolute(root)), os_(os) {
  boost::system::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) throw ReleaseError("cannot create " + root_.string() + ": " + ec.message());
  make_folder(os_, releases_dir(), kFolderMode, false);
  make_folder(os_, log_dir(), kFolderMode, false);
  make_folder(os_, run_dir(), kRunFolderMode, true);
  load();
}

fs::path ReleaseStore::releases_dir() const { return root_ / "releases"; }
fs::path ReleaseStore::run_dir() const { return root_ / "run"; }
fs::path ReleaseStore::log_dir() const { return root_ / "log"; }

fs::path ReleaseStore::release_dir(const std::string& version) const {
  // Also the guard against a "version" like "../../etc" reaching the filesystem.
  if (!appup::is_valid_version(version))
    throw ReleaseError("'" + version + "' is not a release version (expected a semantic version like 1.2.3)");
  return releases_dir() / version;
}

fs::path ReleaseStore::runtime_config_path(const std::string& version) const {
  const fs::path operator_override = root_ / "runtime.json";
  boost::system::error_code ec;
  if (fs::exists(operator_override, ec)) return operator_override;
  try {
    const appup::ReleaseManifest manifest = load_manifest(release_dir(version));
    return manifest.config.empty() ? release_dir(version) / "runtime.json" : manifest.config;
  } catch (const appup::InputError& e) {
    throw ReleaseError(std::string("release ") + version + ": " + e.what());
  }
}

std::vector<ReleaseRecord> ReleaseStore::list() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::vector<std::string> versions;
  boost::system::error_code ec;
  for (fs::directory_iterator it(releases_dir(), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // Skips RELEASES.json and the temporary files and folders of save, unpack and remove.
    if (exists(name)) versions.push_back(name);
  }
  if (ec) throw ReleaseError("cannot list " + releases_dir().string() + ": " + ec.message());
  std::sort(versions.begin(), versions.end(), older);
  std::vector<ReleaseRecord> records;
  for (const std::string& version : versions) {
    ReleaseRecord record{version, state_of(version, state_.permanent, state_.current, state_.old), std::nullopt};
    if (const auto failed = state_.failed.find(version); failed != state_.failed.end()) record.failed = failed->second;
    records.push_back(std::move(record));
  }
  return records;
}

std::optional<std::string> ReleaseStore::permanent() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return state_.permanent;
}

std::optional<std::string> ReleaseStore::current() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return state_.current;
}

bool ReleaseStore::exists(const std::string& version) const {
  boost::system::error_code ec;
  return appup::is_valid_version(version) && fs::is_regular_file(releases_dir() / version / "manifest.json", ec);
}

std::string ReleaseStore::boot_version() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  load();
  std::string version;
  if (state_.permanent) {
    version = *state_.permanent;
    if (!exists(version))
      throw ReleaseError("the permanent release " + version + " is gone: " + release_dir(version).string() +
                         " has no manifest.json (unpack it again, or fix " +
                         (releases_dir() / "RELEASES.json").string() + ")");
  } else {
    const std::vector<ReleaseRecord> records = list();
    if (records.empty())
      throw ReleaseError("no release under " + releases_dir().string() + ": unpack one with `hotswap unpack`");
    version = records.back().version;  // first boot: the newest becomes permanent
  }
  if (state_.permanent == version && !state_.current) return version;
  Bookkeeping next = state_;
  // A release that was current before the restart no longer runs: it becomes old.
  if (next.current && *next.current != version) add_old(next.old, *next.current);
  next.current.reset();
  next.permanent = version;
  drop_old(next.old, version);
  commit(std::move(next));
  return version;
}

std::optional<std::string> ReleaseStore::newest_newer_than(const std::string& than) const {
  const std::optional<appup::Version> base = appup::Version::parse(than);
  if (!base) throw ReleaseError("'" + than + "' is not a release version (expected a semantic version like 1.2.3)");
  const std::vector<ReleaseRecord> records = list();
  if (!records.empty() && *appup::Version::parse(records.back().version) > *base) return records.back().version;
  return std::nullopt;
}

std::optional<std::string> ReleaseStore::reload_target(const std::string& running) {
  const std::optional<appup::Version> base = appup::Version::parse(running);
  if (!base)
    throw ReleaseError("'" + running + "' is not a release version (expected a semantic version like 1.2.3)");
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  load();  // a failed mark another process (or a remove) changed counts
  const std::vector<ReleaseRecord> records = list();
  for (auto it = records.rbegin(); it != records.rend(); ++it) {
    if (!(*appup::Version::parse(it->version) > *base)) break;  // newest first: the rest are not newer
    if (it->state == ReleaseState::Unpacked && !it->failed) return it->version;
  }
  return std::nullopt;
}

void ReleaseStore::mark_failed(const std::string& version, const std::string& error) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  load();
  if (!exists(version)) throw ReleaseError("no release " + version + " under " + releases_dir().string());
  const std::string text = error.substr(0, kMaxFailureText);
  if (const auto it = state_.failed.find(version); it != state_.failed.end() && it->second == text) return;
  Bookkeeping next = state_;
  next.failed[version] = text;
  commit(std::move(next));
}

std::string ReleaseStore::unpack(const fs::path& tarball) {
  TempDir staging(releases_dir(), ".unpack-");
  Unpacker(os_, tarball, staging.path()).run();
  const appup::ReleaseManifest manifest = read_unpacked_manifest(os_, staging.path(), tarball);
  const fs::path target = release_dir(manifest.version);
  boost::system::error_code ec;
  const std::string already = "tarball " + tarball.string() + ": release " + manifest.version + " is already unpacked";
  if (fs::exists(target, ec)) throw ReleaseError(already);
  // mkdtemp made it 0700; a release folder is readable by all, writable by its owner only.
  if (::chmod(staging.path().c_str(), kFolderMode) != 0)
    throw ReleaseError("cannot set the mode of " + staging.path().string() + ": " + errno_text());
  // Every file and folder must be on disk before the release appears under its name.
  const os::SysCallIntResult opened = os_.open(staging.path().string(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const os::Fd staged(opened, os_);
  const os::SysCallIntResult synced = opened.ok() ? os_.syncfs(staged.get()) : opened;
  if (!synced.ok())
    throw ReleaseError("tarball " + tarball.string() + ": cannot sync the unpacked release " + manifest.version +
                       " to disk: " + synced.error_text());
  if (const os::SysCallIntResult moved = os_.rename(staging.path().string(), target.string()); !moved.ok()) {
    if (moved.error == EEXIST || moved.error == ENOTEMPTY)  // another unpack of the same version won the race
      throw ReleaseError(already);
    throw ReleaseError("cannot move the unpacked release to " + target.string() + ": " + moved.error_text());
  }
  staging.keep();
  sync_folder(os_, releases_dir());
  // Unpacked again (its folder was deleted by hand): a fresh chance for reload.
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  load();
  if (state_.failed.count(manifest.version) != 0) {
    Bookkeeping next = state_;
    next.failed.erase(manifest.version);
    try {
      commit(std::move(next));
    } catch (const ReleaseError& e) {
      throw ReleaseError("release " + manifest.version + " is unpacked, but clearing the failed mark of its last "
                         "upgrade failed (reload skips it until it is named): " + e.what());
    }
  }
  return manifest.version;
}

void ReleaseStore::mark_current(const std::string& version) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  load();
  if (!exists(version)) throw ReleaseError("no release " + version + " under " + releases_dir().string());
  Bookkeeping next = state_;
  if (next.current && *next.current != version) add_old(next.old, *next.current);
  // Back on the permanent release (a downgrade): nothing runs that is not permanent.
  if (next.permanent == version) {
    next.current.reset();
  } else {
    next.current = version;
  }
  drop_old(next.old, version);
  next.failed.erase(version);  // it runs: whatever failed before is past
  commit(std::move(next));
}

void ReleaseStore::make_permanent(const std::string& version) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  load();
  if (!exists(version)) throw ReleaseError("no release " + version + " under " + releases_dir().string());
  const std::optional<std::string> running = state_.current ? state_.current : state_.permanent;
  if (running != version)
    throw ReleaseError("release " + version + " is not the running release (running: " + running.value_or("none") +
                       "); only the running release can be made permanent");
  if (state_.permanent == version) return;
  Bookkeeping next = state_;
  if (next.permanent) add_old(next.old, *next.permanent);
  next.permanent = version;
  next.current.reset();
  drop_old(next.old, version);
  commit(std::move(next));
}

void ReleaseStore::remove(const std::string& version) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  load();
  const fs::path folder = release_dir(version);
  if (!exists(version)) throw ReleaseError("no release " + version + " under " + releases_dir().string());
  if (state_.permanent == version)
    throw ReleaseError("cannot remove: release " + version + " is permanent (make another release permanent first)");
  if (state_.current == version)
    throw ReleaseError("cannot remove: release " + version + " is current (it is running)");
  // Moved aside in one rename first, so a crash half-way through the deletion
  // never leaves a partial release that still looks bootable.
  TempDir trash(releases_dir(), ".remove-");
  if (const os::SysCallIntResult moved = os_.rename(folder.string(), trash.path().string()); !moved.ok())
    throw ReleaseError("cannot remove " + folder.string() + ": " + moved.error_text());
  Bookkeeping next = state_;
  drop_old(next.old, version);
  next.failed.erase(version);
  try {
    commit(std::move(next));
  } catch (const ReleaseError&) {
    // The bookkeeping still lists the release: put its folder back.
    os_.rename(trash.path().string(), folder.string());
    throw;
  }
  boost::system::error_code ec;
  fs::remove_all(trash.path(), ec);
  if (ec)
    throw ReleaseError("release " + version + " removed, but deleting " + trash.path().string() +
                       " failed: " + ec.message());
}

json ReleaseStore::to_json() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  json releases = json::array();
  for (const ReleaseRecord& record : list()) {
    json entry = {{"version", record.version}, {"state", to_string(record.state)}};
    if (record.failed) entry["failed"] = *record.failed;
    releases.push_back(std::move(entry));
  }
  return {{"releases", std::move(releases)},
          {"permanent", version_or_null(state_.permanent)},
          {"current", version_or_null(state_.current)}};
}

void ReleaseStore::commit(Bookkeeping next) {
  const fs::path file = releases_dir() / "RELEASES.json";
  json document = {
      {"permanent", version_or_null(next.permanent)}, {"current", version_or_null(next.current)}, {"old", next.old}};
  if (!next.failed.empty()) document["failed"] = next.failed;
  // replace: a failed target's error text (a module's words) may not be valid UTF-8.
  const std::string text = document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  // A temporary file of this call's own in the same folder: another process
  // saving at the same moment writes its own, and rename stays atomic.
  fs::path temporary;
  os::Fd fd = create_unique_file(os_, releases_dir(), ".RELEASES.json.", 0644, temporary);
  const auto fail = [&](const std::string& step, const os::SysCallIntResult& result) {
    fd.close();
    os_.unlink(temporary.string());
    throw ReleaseError("cannot save " + file.string() + ": " + step + " " + temporary.filename().string() + ": " +
                       result.error_text());
  };
  if (const os::SysCallSizeResult written = write_all(os_, fd.get(), text.data(), text.size()); !written.ok())
    fail("cannot write its temporary copy", {-1, written.error});
  if (sync_hook_) sync_hook_();
  if (const os::SysCallIntResult synced = os_.fsync(fd.get()); !synced.ok())
    fail("cannot sync its temporary copy", synced);
  if (const os::SysCallIntResult closed = fd.close(); !closed.ok()) fail("cannot write its temporary copy", closed);
  // rename replaces the old file in one step: a reader sees the old or the new content, never half.
  if (const os::SysCallIntResult renamed = os_.rename(temporary.string(), file.string()); !renamed.ok())
    fail("cannot rename its temporary copy", renamed);
  state_ = std::move(next);
  try {
    sync_folder(os_, releases_dir());
  } catch (const ReleaseError& e) {
    throw ReleaseError(file.string() + " was replaced, but the change may not survive a crash: " + e.what());
  }
}

// Mutators call this first, so that a long-running host does not overwrite a
// change made meanwhile by another `hotswap` command on the same root.
void ReleaseStore::load() {
  const fs::path file = releases_dir() / "RELEASES.json";
  boost::system::error_code ec;
  if (!fs::exists(file, ec)) {  // a fresh root: nothing has run yet
    state_ = {};
    return;
  }
  json document;
  try {
    // Bounded in size and depth: the checks below dump values into their messages, which recurses.
    document = appup::parse_json_text(read_text_file(file, os_), file.string());
  } catch (const appup::InputError& e) {
    if (e.problem().rfind("cannot read", 0) == 0) throw ReleaseError(e.what());
    corrupt(file, e.problem());  // invalid JSON, or nested too deep
  }
  if (!document.is_object()) corrupt(file, "expected a JSON object");
  // Read every field before assigning any, so a corrupt file leaves the state as it was.
  Bookkeeping loaded;
  loaded.permanent = version_field(file, document, "permanent");
  loaded.current = version_field(file, document, "current");
  loaded.old = old_field(file, document);
  loaded.failed = failed_field(file, document);
  state_ = std::move(loaded);
}

}  // namespace hotswap::host
