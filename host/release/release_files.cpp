#include "release/release_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <hotswap/appup/error.hpp>
#include <hotswap/appup/json_reader.hpp>
#include <functional>
#include <set>
#include <stdexcept>

#include "os/fd.hpp"

namespace hotswap::host {

namespace fs = boost::filesystem;

std::string read_text_file(const fs::path& file, os::OsSysCalls& os) {
  const std::string name = file.string();
  const auto unreadable = [&](int error) {
    // open() succeeds on a folder and read() then says EISDIR: say it plainly.
    return appup::InputError(name, "", "cannot read: " + (error == EISDIR ? "is a directory" : os::errno_text(error)));
  };
  // O_NONBLOCK: a FIFO named like a release's file must not block the open; it
  // is refused below. It changes nothing for a regular file's reads.
  const os::SysCallIntResult opened = os.open(name, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (!opened.ok()) throw unreadable(opened.error);
  const os::Fd fd(opened, os);
  struct stat st {};
  if (const os::SysCallIntResult got = os.fstat(fd.get(), st); !got.ok()) throw unreadable(got.error);
  if (S_ISDIR(st.st_mode)) throw unreadable(EISDIR);
  if (!S_ISREG(st.st_mode)) throw appup::InputError(name, "", "cannot read: not a regular file");
  const auto too_large = [&] {
    return appup::InputError(name, "", "cannot read: larger than " + std::to_string(kMaxTextFileBytes) +
                                           " bytes, the most a release's JSON file may have");
  };
  if (static_cast<uint64_t>(st.st_size) > kMaxTextFileBytes) throw too_large();
  std::string text;
  char chunk[16 * 1024];
  for (;;) {
    const os::SysCallSizeResult got = os.read(fd.get(), chunk, sizeof chunk);
    if (!got.ok() && got.error == EINTR) continue;
    if (!got.ok()) throw unreadable(got.error);
    if (got.value == 0) return text;
    text.append(chunk, size_t(got.value));
    if (text.size() > kMaxTextFileBytes) throw too_large();  // it grew while being read
  }
}

nlohmann::json read_json_file(const fs::path& file, os::OsSysCalls& os) {
  return appup::parse_json_text(read_text_file(file, os), file.string());
}

appup::ReleaseManifest load_manifest(const fs::path& release_dir) {
  const fs::path file = release_dir / "manifest.json";
  return appup::parse_manifest(read_json_file(file), release_dir, file.string());
}

appup::Appup load_appup(const fs::path& file) { return appup::parse_appup(read_json_file(file), file.string()); }

appup::Appup load_appup_of(const appup::ModuleEntry& entry) { return load_appup(entry.appup); }

appup::ReleaseManifest load_release_manifest(const fs::path& dir) {
  try {
    return load_manifest(dir);
  } catch (const appup::InputError& e) {
    throw std::runtime_error(std::string("invalid release manifest: ") + e.what());
  }
}

std::vector<const appup::ModuleEntry*> boot_order(const appup::ReleaseManifest& manifest) {
  std::vector<const appup::ModuleEntry*> order;
  std::set<std::string> placed, visiting;
  std::function<void(const appup::ModuleEntry&)> place = [&](const appup::ModuleEntry& m) {
    if (placed.count(m.name)) return;
    if (!visiting.insert(m.name).second)
      throw std::runtime_error("release " + manifest.version + ": dependency cycle through module " + m.name);
    for (const std::string& dep : m.depends_on)
      if (const appup::ModuleEntry* d = manifest.find(dep)) place(*d);
    placed.insert(m.name);
    order.push_back(&m);
  };
  for (const auto& m : manifest.modules) place(m);
  return order;
}

}  // namespace hotswap::host
