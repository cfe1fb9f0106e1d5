// Helpers for the ops tests: a scratch folder, and release tarballs written
// with libarchive so each test can build exactly the (malicious) archive it needs.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <boost/filesystem/fstream.hpp>
#include <boost/filesystem/operations.hpp>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace hotswap::ops_test {

namespace fs = boost::filesystem;

class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / fs::unique_path("hotswap-ops-%%%%-%%%%-%%%%")) {
    fs::create_directories(path_);
  }
  ~TempDir() {
    boost::system::error_code ignored;  // a destructor must not throw; a leftover temp folder is harmless
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline void write_file(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  fs::ofstream out(file, std::ios::binary);
  out << text;
}

inline std::string read_file(const fs::path& file) {
  fs::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string sha256_hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 15]);
  }
  return out;
}

// One archive entry as the test wants it, however unsafe.
struct Entry {
  enum class Kind { File, Folder, Symlink, Hardlink, Fifo } kind = Kind::File;
  std::string path;
  std::string content;  // file data, or the link target
  unsigned mode = 0644;
};

// A gzip-compressed pax tarball of `entries`.
inline void write_tarball(const fs::path& tarball, const std::vector<Entry>& entries) {
  std::unique_ptr<archive, decltype(&archive_write_free)> writer(archive_write_new(), &archive_write_free);
  archive_write_add_filter_gzip(writer.get());
  archive_write_set_format_pax_restricted(writer.get());
  if (archive_write_open_filename(writer.get(), tarball.c_str()) != ARCHIVE_OK)
    throw std::runtime_error(archive_error_string(writer.get()));
  for (const Entry& e : entries) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> header(archive_entry_new(), &archive_entry_free);
    archive_entry_set_pathname(header.get(), e.path.c_str());
    archive_entry_set_perm(header.get(), e.mode);
    switch (e.kind) {
      case Entry::Kind::File:
        archive_entry_set_filetype(header.get(), AE_IFREG);
        archive_entry_set_size(header.get(), la_int64_t(e.content.size()));
        break;
      case Entry::Kind::Folder: archive_entry_set_filetype(header.get(), AE_IFDIR); break;
      case Entry::Kind::Symlink:
        archive_entry_set_filetype(header.get(), AE_IFLNK);
        archive_entry_set_symlink(header.get(), e.content.c_str());
        break;
      case Entry::Kind::Hardlink:
        archive_entry_set_filetype(header.get(), AE_IFREG);
        archive_entry_set_hardlink(header.get(), e.content.c_str());
        break;
      case Entry::Kind::Fifo: archive_entry_set_filetype(header.get(), AE_IFIFO); break;
    }
    if (archive_write_header(writer.get(), header.get()) != ARCHIVE_OK)
      throw std::runtime_error(archive_error_string(writer.get()));
    if (e.kind == Entry::Kind::File && !e.content.empty())
      archive_write_data(writer.get(), e.content.data(), e.content.size());
  }
  if (archive_write_close(writer.get()) != ARCHIVE_OK) throw std::runtime_error(archive_error_string(writer.get()));
}

// A gzip-compressed tar holding one ustar header that claims `size` bytes and
// no data: how a test shows that a size is refused before anything is read.
inline void write_oversized_tarball(const fs::path& tarball, const std::string& name, uint64_t size) {
  std::string block(512, '\0');
  const auto field = [&](size_t offset, const std::string& text) { block.replace(offset, text.size(), text); };
  char octal[16];
  field(0, name);
  field(100, "0000644");
  field(108, "0000000");
  field(116, "0000000");
  std::snprintf(octal, sizeof octal, "%011llo", static_cast<unsigned long long>(size));
  field(124, octal);
  field(136, "00000000000");
  field(148, "        ");  // the checksum counts its own field as spaces
  field(156, "0");
  field(257, std::string("ustar\0", 6) + "00");
  unsigned checksum = 0;
  for (unsigned char c : block) checksum += c;
  std::snprintf(octal, sizeof octal, "%06o", checksum);
  field(148, std::string(octal, 6) + std::string("\0 ", 2));
  block += std::string(1024, '\0');

  std::unique_ptr<archive, decltype(&archive_write_free)> writer(archive_write_new(), &archive_write_free);
  archive_write_add_filter_gzip(writer.get());
  archive_write_set_format_raw(writer.get());  // the bytes above, as they are
  archive_write_open_filename(writer.get(), tarball.c_str());
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(), &archive_entry_free);
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_write_header(writer.get(), entry.get());
  archive_write_data(writer.get(), block.data(), block.size());
  if (archive_write_close(writer.get()) != ARCHIVE_OK) throw std::runtime_error(archive_error_string(writer.get()));
}

// The entries of a valid release `version`: manifest.json naming one module
// whose library (and its sha256), appup and runtime config are all there.
inline std::vector<Entry> release_entries(const std::string& version) {
  const std::string library = "not really ELF: unpack only checks the hash " + version;
  const nlohmann::json manifest = {{"release", "arena"},
                                   {"version", version},
                                   {"config", "runtime.json"},
                                   {"modules",
                                    {{{"name", "arena"},
                                      {"version", version},
                                      {"file", "modules/arena-" + version + ".so"},
                                      {"sha256", sha256_hex(library)},
                                      {"appup", "appups/arena-" + version + ".appup.json"}}}}};
  return {
      {Entry::Kind::File, "manifest.json", manifest.dump(2), 0644},
      {Entry::Kind::Folder, "modules", "", 0755},
      {Entry::Kind::File, "modules/arena-" + version + ".so", library, 0755},
      {Entry::Kind::File, "appups/arena-" + version + ".appup.json",
       R"({"module": "arena", "version": ")" + version + R"(", "up": [], "down": []})", 0644},
      {Entry::Kind::File, "runtime.json", R"({"log_level": "info"})", 0644},
      {Entry::Kind::File, "bin/hotswap", "#!/bin/sh\n", 04755},  // setuid must not survive unpacking
  };
}

inline fs::path release_tarball(const fs::path& folder, const std::string& version) {
  const fs::path tarball = folder / ("arena-" + version + ".tar.gz");
  write_tarball(tarball, release_entries(version));
  return tarball;
}

// What a folder holds (names only), sorted.
inline std::vector<std::string> names_in(const fs::path& folder) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(folder)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace hotswap::ops_test
