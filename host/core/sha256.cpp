#include "core/sha256.hpp"

#include <fcntl.h>
#include <openssl/evp.h>

#include <cerrno>
#include <memory>
#include <stdexcept>

#include "os/fd.hpp"

namespace hotswap::host {
namespace {

std::string to_hex(const unsigned char* digest, unsigned int length) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 15]);
  }
  return out;
}

}  // namespace

std::string sha256_bytes(const void* data, size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data, size, digest, &length, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("sha256: cannot compute the digest");
  return to_hex(digest, length);
}

std::string sha256_file(const boost::filesystem::path& file, os::OsSysCalls& os) {
  const os::SysCallIntResult opened = os.open(file.string(), O_RDONLY | O_CLOEXEC);
  if (!opened.ok()) throw std::runtime_error("cannot read " + file.string() + ": " + opened.error_text());
  const os::Fd fd(opened, os);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("sha256: cannot initialise the digest");
  char chunk[64 * 1024];
  for (;;) {
    const os::SysCallSizeResult got = os.read(fd.get(), chunk, sizeof chunk);
    if (!got.ok() && got.error == EINTR) continue;
    if (!got.ok()) throw std::runtime_error("cannot read " + file.string() + ": " + got.error_text());
    if (got.value == 0) break;
    EVP_DigestUpdate(ctx.get(), chunk, static_cast<size_t>(got.value));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  return to_hex(digest, length);
}

}  // namespace hotswap::host
