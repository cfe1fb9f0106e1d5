#include "check/release_source.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <boost/filesystem/operations.hpp>
#include <stdexcept>

#include <hotswap/appup/error.hpp>

#include "release/release_store.hpp"
#include "release/runtime_config.hpp"

namespace hotswap::host {

namespace fs = boost::filesystem;

namespace {

void remove_quietly(const fs::path& folder) {
  boost::system::error_code ignored;
  fs::remove_all(folder, ignored);
}

}  // namespace

ReleaseSource::ReleaseSource(fs::path path, os::OsSysCalls& os) : path_(std::move(path)) {
  boost::system::error_code ec;
  const fs::file_status status = fs::status(path_, ec);
  if (fs::is_directory(status)) {
    dir_ = fs::absolute(path_);
    return;
  }
  if (!fs::exists(status))
    throw std::runtime_error(path_.string() + ": no such release folder or tarball");
  if (!fs::is_regular_file(status))
    throw std::runtime_error(path_.string() + ": neither a release folder nor a tarball");
  const fs::path parent = fs::temp_directory_path(ec);
  if (ec) throw std::runtime_error("cannot find a temporary folder to unpack " + path_.string() + ": " + ec.message());
  std::string pattern = (parent / "hotswap-check-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error("cannot create a temporary folder in " + parent.string() + " to unpack " +
                             path_.string() + ": " + std::strerror(errno));
  temporary_ = pattern;
  dir_ = temporary_;
  try {
    unpack_release_tarball(path_, temporary_, os);
  } catch (...) {
    remove_quietly(temporary_);
    throw;
  }
}

ReleaseSource::~ReleaseSource() {
  if (!temporary_.empty()) remove_quietly(temporary_);
}

std::string ReleaseSource::relative(const fs::path& file) const {
  const fs::path inside = file.lexically_relative(dir_);
  if (inside.empty() || *inside.begin() == "..") return file.string();
  return inside.generic_string();
}

std::string ReleaseSource::shown(std::string text) const {
  if (temporary_.empty()) return text;
  const std::string from = temporary_.string();
  const std::string to = path_.string();
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

CheckProblem problem_of(const std::exception& error) {
  if (const auto* input = dynamic_cast<const appup::InputError*>(&error))
    return {input->file(), input->field(), input->problem()};
  if (const auto* config = dynamic_cast<const ConfigError*>(&error)) {
    // what() is "<file>: <key>: <problem>" (no key for a problem with the whole file).
    std::string message = config->what();
    const std::string prefix = config->file() + ": " + (config->key().empty() ? "" : config->key() + ": ");
    if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
    return {config->file(), config->key(), message};
  }
  return {"", "", error.what()};
}

}  // namespace hotswap::host
