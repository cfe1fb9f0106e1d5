// Checks a module library's ELF image before the dynamic loader sees it.
//
// dlopen trusts the file: a library cut short (a truncated copy whose sha256
// in the manifest was computed over the truncated bytes) makes ld.so map
// segments past the end of the file, and the first touch of such a page kills
// the process with SIGBUS. This reads the image as plain bytes, every offset
// and size checked against the span before it is used, and refuses:
//  - anything but a 64-bit shared object (ET_DYN) of the host's byte order and
//    machine;
//  - a program header table or a section header table that does not lie
//    inside the file, and a program header whose file range does not;
//  - a dynamic symbol table that holds STB_GNU_UNIQUE symbols: glibc never
//    unloads such a library, so a new version would answer with the old
//    version's data. They come from template static data members and inline
//    variables built without -fno-gnu-unique.
//
// It also reads the module's ABI tag (module.h, HOTSWAP_ABI_SYMBOL): the
// 4-byte value of that exported data symbol, taken from the file bytes that
// hold it, so a module's ABI is known before any of its code runs.
//
// It reads only the span it is given (never past it, never a pointer inside
// it), so it can be run on any bytes: the unit tests hand it corrupt headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace hotswap::host {

class ElfImageError : public std::runtime_error {
 public:
  enum class Kind {
    NotElf,           // no ELF magic
    NotSharedObject,  // an ELF file, but not ET_DYN
    WrongTarget,      // another class, byte order or machine than the host's
    Corrupt,          // a header, table or range that does not fit the file
    GnuUnique,        // STB_GNU_UNIQUE symbols (the message names some)
  };
  ElfImageError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

struct ElfImageFacts {
  size_t program_headers = 0;
  size_t dynamic_symbols = 0;  // entries of the dynamic symbol table (0 when it has none)
  // The value of the exported HOTSWAP_ABI_SYMBOL; nullopt when the library has
  // none (built before the tag existed). A tag that is not a defined 4-byte
  // object whose bytes lie in the file is Corrupt.
  std::optional<uint32_t> module_abi;
};

// Checks the image in [data, data + size). Throws ElfImageError with a message
// that says what is wrong (without a file name: the caller adds it).
ElfImageFacts check_elf_image(const unsigned char* data, size_t size);

}  // namespace hotswap::host
