// Reading the files of a release (manifest.json, the appups) and other JSON
// files, with messages for the operator. appup/ parses and validates; this is
// where the host touches the disk for it.
#pragma once

#include <boost/filesystem/path.hpp>
#include <cstdint>
#include <hotswap/appup/appup.hpp>
#include <hotswap/appup/manifest.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "os/os_sys_calls.hpp"

namespace hotswap::host {

// The most read_text_file reads: a release's JSON files are kilobytes, and a
// file named like one must not fill the host's memory.
constexpr uint64_t kMaxTextFileBytes = 16ull << 20;

// The whole file, which must be a regular file of at most kMaxTextFileBytes.
// Throws appup::InputError(file, "", "cannot read: <why>"). Never blocks on a
// FIFO or a device named like the file.
std::string read_text_file(const boost::filesystem::path& file, os::OsSysCalls& os = os::real_os_sys_calls());
// Reads and parses one JSON file. Throws appup::InputError: "<file>: cannot read: ..." or
// "<file>: invalid JSON: ...".
nlohmann::json read_json_file(const boost::filesystem::path& file, os::OsSysCalls& os = os::real_os_sys_calls());

// Reads and validates <release_dir>/manifest.json. Throws appup::InputError naming the file and field.
appup::ReleaseManifest load_manifest(const boost::filesystem::path& release_dir);
// Reads and validates an appup file. Throws appup::InputError naming the file and field.
appup::Appup load_appup(const boost::filesystem::path& file);
// The appup of a module of an unpacked release (its file entry.appup): the
// AppupSource the host hands to appup::make_plan.
appup::Appup load_appup_of(const appup::ModuleEntry& entry);

// load_manifest for the operator: throws std::runtime_error("invalid release manifest: <file>: <field>: ...").
appup::ReleaseManifest load_release_manifest(const boost::filesystem::path& dir);

// The release's modules in manifest order, each after the modules it depends
// on (the order a host starts them in). Throws std::runtime_error naming a
// dependency cycle. The pointers are into `manifest`.
std::vector<const appup::ModuleEntry*> boot_order(const appup::ReleaseManifest& manifest);

}  // namespace hotswap::host
