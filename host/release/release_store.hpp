// The releases on disk under a root folder, and their states (after OTP's
// release_handler):
//
//   ROOT/releases/<version>/   an unpacked release (manifest.json, modules/, appups/, runtime.json, bin/)
//   ROOT/releases/RELEASES.json  the bookkeeping: each release's state; written atomically
//                              (a temporary file of its own, fsync, rename, fsync the folder)
//   ROOT/run/                  0700: admin.sock, hotswap.pid
//   ROOT/log/                  the daemon's log
//   ROOT/runtime.json          optional operator override of the release's runtime config
//
// States: unpacked (on disk, never run), current (running, not yet permanent),
// permanent (booted on restart), old (was current or permanent before). The
// host boots the permanent release; a release that ran but was never made
// permanent is not booted after a restart.
//
// A release an upgrade or downgrade to which failed (its check refused it, or
// it rolled back) is marked failed, with the error, in RELEASES.json
// ("failed": {version: error}). reload skips it (reload_target) until it
// runs (named explicitly: `hotswap upgrade VSN`), or is removed, or is
// unpacked again.
#pragma once

#include <boost/filesystem/path.hpp>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "os/os_sys_calls.hpp"

namespace hotswap::host {

enum class ReleaseState { Unpacked, Current, Permanent, Old };
const char* to_string(ReleaseState state);

struct ReleaseRecord {
  std::string version;
  ReleaseState state = ReleaseState::Unpacked;
  // Set when the last upgrade or downgrade to this release failed: the error.
  std::optional<std::string> failed;
};

class ReleaseError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thread-safe. Writes hold the mutex across an fsync, so once its loop runs a
// host makes every call that takes the mutex on its worker thread
// (UpgradeCoordinator), and its loop reads a cached copy of the bookkeeping.
// Several processes may share a root (the host and `hotswap` commands): each
// change re-reads RELEASES.json first and replaces it in one rename. A change
// whose write fails leaves RELEASES.json and this object's state as they were.
class ReleaseStore {
 public:
  // Creates ROOT/releases, ROOT/run (0700) and ROOT/log when missing. File
  // writes go through `os`, which must outlive the store.
  explicit ReleaseStore(boost::filesystem::path root, os::OsSysCalls& os = os::real_os_sys_calls());

  const boost::filesystem::path& root() const { return root_; }
  boost::filesystem::path releases_dir() const;
  boost::filesystem::path run_dir() const;
  boost::filesystem::path log_dir() const;
  boost::filesystem::path release_dir(const std::string& version) const;  // validates the version
  // The runtime config in force for `version`: ROOT/runtime.json when present, else the release's own.
  boost::filesystem::path runtime_config_path(const std::string& version) const;

  // Every release folder with a manifest, oldest version first, with its state.
  std::vector<ReleaseRecord> list() const;
  std::optional<std::string> permanent() const;
  std::optional<std::string> current() const;  // the running one when it is not permanent
  bool exists(const std::string& version) const;

  // The release to boot: the permanent one; on a first boot (none permanent) the
  // newest release on disk, which becomes permanent. ReleaseError when there is none.
  std::string boot_version();
  // The newest release on disk that is newer than `than`, if any.
  std::optional<std::string> newest_newer_than(const std::string& than) const;
  // What reload (and SIGHUP) upgrades to: the newest release in state
  // unpacked that is newer than `running` and not marked failed. A release
  // that is old (it ran before) or failed is reached only by naming it.
  std::optional<std::string> reload_target(const std::string& running);

  // Unpacks a release tarball made by hotswap_add_release. Refuses entries that
  // are absolute, contain "..", or are links or devices, an existing version, and
  // a tarball without a valid manifest.json. Returns the version. Nothing is
  // left behind on failure.
  std::string unpack(const boost::filesystem::path& tarball);

  // After an upgrade/downgrade commits: `version` runs. The previous current
  // (unless permanent) becomes old.
  void mark_current(const std::string& version);
  // `version` must be the running release; the previous permanent becomes old.
  void make_permanent(const std::string& version);
  // Deletes an unpacked or old release; refused for the current or permanent one.
  // Forgets its failed mark.
  void remove(const std::string& version);
  // Records that the last upgrade or downgrade to `version` failed with
  // `error` (kept to its first kMaxFailureText bytes). mark_current, remove
  // and unpack clear the mark.
  void mark_failed(const std::string& version, const std::string& error);
  static constexpr size_t kMaxFailureText = 1024;

  nlohmann::json to_json() const;  // {"releases":[{"version":..,"state":..}], "permanent":.., "current":..}

  // For tests: called by every write of RELEASES.json, with the store's mutex
  // held, just before the fsync, so that a test can hold a write where a slow
  // disk would. Set it before any thread writes.
  void set_sync_hook(std::function<void()> hook) { sync_hook_ = std::move(hook); }

 private:
  // What RELEASES.json records.
  struct Bookkeeping {
    std::optional<std::string> permanent;
    std::optional<std::string> current;  // the running one when it is not permanent
    std::vector<std::string> old;
    std::map<std::string, std::string> failed;  // version -> the error of its last failed upgrade
  };

  // Writes `next` to RELEASES.json (a temporary file of this call's own, fsync,
  // rename, fsync the folder), then makes it this object's state. When a step
  // before the rename fails, RELEASES.json and the state are unchanged; the
  // ReleaseError names the file and the system's reason. (When only the
  // folder's fsync fails, the change is made but may not survive a crash: the
  // error says so.)
  void commit(Bookkeeping next);
  void load();

  boost::filesystem::path root_;
  os::OsSysCalls& os_;
  mutable std::recursive_mutex mutex_;  // guards state_ and RELEASES.json
  Bookkeeping state_;
  std::function<void()> sync_hook_;
};

// Extracts a release tarball into the empty folder `into`, with every rule
// and limit ReleaseStore::unpack applies (only files and folders, no absolute
// path or "..", at most 1 GiB and 100 000 entries; modes masked with 0755).
// Checks nothing of the release itself. Throws ReleaseError naming the
// tarball and, for a bad entry, the entry. (`hotswap check` unpacks with it.)
void unpack_release_tarball(const boost::filesystem::path& tarball, const boost::filesystem::path& into,
                            os::OsSysCalls& os = os::real_os_sys_calls());

}  // namespace hotswap::host
