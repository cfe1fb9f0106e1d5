#include "core/elf_image.hpp"

#include <elf.h>
#include <hotswap/module.h>

#include <cstring>
#include <optional>
#include <string_view>

namespace hotswap::host {
namespace {

static_assert(sizeof(void*) == 8, "the loader checks 64-bit images only");

#if defined(__x86_64__)
constexpr uint16_t kHostMachine = EM_X86_64;
constexpr const char* kHostMachineName = "x86-64";
#elif defined(__aarch64__)
constexpr uint16_t kHostMachine = EM_AARCH64;
constexpr const char* kHostMachineName = "AArch64";
#elif defined(__riscv)
constexpr uint16_t kHostMachine = EM_RISCV;
constexpr const char* kHostMachineName = "RISC-V";
#else
#error "add this machine's EM_ constant"
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr unsigned char kHostData = ELFDATA2LSB;
#else
constexpr unsigned char kHostData = ELFDATA2MSB;
#endif

// Names listed in the GNU_UNIQUE message; the count says how many more there are.
constexpr size_t kUniqueNamesShown = 5;

[[noreturn]] void corrupt(const std::string& what) { throw ElfImageError(ElfImageError::Kind::Corrupt, what); }

// offset + length <= size, without overflow.
bool inside(uint64_t offset, uint64_t length, uint64_t size) { return offset <= size && length <= size - offset; }

// count * each, or nothing on overflow.
std::optional<uint64_t> times(uint64_t count, uint64_t each) {
  if (each != 0 && count > UINT64_MAX / each) return std::nullopt;
  return count * each;
}

std::string hex(uint64_t value) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

class Image {
 public:
  Image(const unsigned char* data, size_t size) : data_(data), size_(size) {}

  // A copy of the T at `offset` (the span holds no alignment promise).
  template <typename T>
  T read(uint64_t offset, const char* what) const {
    if (!inside(offset, sizeof(T), size_))
      corrupt(std::string(what) + " at offset " + hex(offset) + " lies past the end of the file (" +
              std::to_string(size_) + " bytes)");
    T value;
    std::memcpy(&value, data_ + offset, sizeof(T));
    return value;
  }
  const unsigned char* at(uint64_t offset) const { return data_ + offset; }
  size_t size() const { return size_; }

 private:
  const unsigned char* data_;
  size_t size_;
};

void check_identity(const Image& image) {
  if (image.size() < EI_NIDENT || std::memcmp(image.at(0), ELFMAG, SELFMAG) != 0)
    throw ElfImageError(ElfImageError::Kind::NotElf, "not an ELF file");
  const unsigned char* ident = image.at(0);
  if (ident[EI_CLASS] != ELFCLASS64)
    throw ElfImageError(ElfImageError::Kind::WrongTarget,
                        ident[EI_CLASS] == ELFCLASS32 ? "a 32-bit ELF file; this host loads 64-bit libraries only"
                                                      : "unknown ELF class " + std::to_string(ident[EI_CLASS]));
  if (ident[EI_DATA] != kHostData)
    throw ElfImageError(ElfImageError::Kind::WrongTarget, "ELF byte order " + std::to_string(ident[EI_DATA]) +
                                                              " differs from this host's");
  if (ident[EI_VERSION] != EV_CURRENT) corrupt("unknown ELF version " + std::to_string(ident[EI_VERSION]));
}

void check_header(const Elf64_Ehdr& header, size_t size) {
  if (header.e_type != ET_DYN)
    throw ElfImageError(ElfImageError::Kind::NotSharedObject,
                        "an ELF file but not a shared object (e_type " + std::to_string(header.e_type) + ")");
  if (header.e_machine != kHostMachine)
    throw ElfImageError(ElfImageError::Kind::WrongTarget, "built for ELF machine " +
                                                              std::to_string(header.e_machine) + ", this host is " +
                                                              kHostMachineName);
  if (header.e_phnum == 0) corrupt("no program headers");
  if (header.e_phnum == PN_XNUM) corrupt("an extended program header count (PN_XNUM) is not supported");
  if (header.e_phentsize != sizeof(Elf64_Phdr))
    corrupt("program header size " + std::to_string(header.e_phentsize) + ", expected " +
            std::to_string(sizeof(Elf64_Phdr)));
  if (!inside(header.e_phoff, uint64_t{header.e_phnum} * sizeof(Elf64_Phdr), size))
    corrupt("the program header table (offset " + hex(header.e_phoff) + ", " + std::to_string(header.e_phnum) +
            " entries) lies past the end of the file (" + std::to_string(size) + " bytes): is the file truncated?");
  if (header.e_shnum != 0 || header.e_shoff != 0) {
    if (header.e_shentsize != sizeof(Elf64_Shdr))
      corrupt("section header size " + std::to_string(header.e_shentsize) + ", expected " +
              std::to_string(sizeof(Elf64_Shdr)));
    if (!inside(header.e_shoff, uint64_t{header.e_shnum} * sizeof(Elf64_Shdr), size))
      corrupt("the section header table (offset " + hex(header.e_shoff) + ", " + std::to_string(header.e_shnum) +
              " entries) lies past the end of the file (" + std::to_string(size) + " bytes): is the file truncated?");
  }
}

// The program headers, each one's file range checked against the file.
std::vector<Elf64_Phdr> read_program_headers(const Image& image, const Elf64_Ehdr& header) {
  std::vector<Elf64_Phdr> headers;
  headers.reserve(header.e_phnum);
  bool loadable = false;
  for (size_t i = 0; i < header.e_phnum; ++i) {
    const Elf64_Phdr ph = image.read<Elf64_Phdr>(header.e_phoff + i * sizeof(Elf64_Phdr), "a program header");
    if (!inside(ph.p_offset, ph.p_filesz, image.size()))
      corrupt("program header " + std::to_string(i) + " covers bytes " + hex(ph.p_offset) + ".." +
              hex(ph.p_offset + ph.p_filesz) + " but the file has " + std::to_string(image.size()) +
              " bytes: is the file truncated?");
    if (ph.p_type == PT_LOAD) {
      loadable = true;
      if (ph.p_filesz > ph.p_memsz)
        corrupt("loadable segment " + std::to_string(i) + " has more bytes in the file than in memory");
    }
    headers.push_back(ph);
  }
  if (!loadable) corrupt("no loadable segment");
  return headers;
}

// Dynamic-section addresses are virtual: this finds the file bytes that hold
// [address, address + length), which must lie inside one loadable segment's file part.
class AddressMap {
 public:
  explicit AddressMap(const std::vector<Elf64_Phdr>& headers) {
    for (const Elf64_Phdr& ph : headers)
      if (ph.p_type == PT_LOAD) loads_.push_back(ph);
  }
  uint64_t offset_of(uint64_t address, uint64_t length, const char* what) const {
    for (const Elf64_Phdr& ph : loads_)
      if (address >= ph.p_vaddr && inside(address - ph.p_vaddr, length, ph.p_filesz))
        return ph.p_offset + (address - ph.p_vaddr);
    corrupt(std::string(what) + " at address " + hex(address) + " (" + std::to_string(length) +
            " bytes) lies outside the file's loadable segments");
  }

 private:
  std::vector<Elf64_Phdr> loads_;
};

struct DynamicTables {
  std::optional<uint64_t> symtab, strtab, strsz, syment, hash, gnu_hash;
};

DynamicTables read_dynamic(const Image& image, const Elf64_Phdr& dynamic) {
  DynamicTables tables;
  const uint64_t entries = dynamic.p_filesz / sizeof(Elf64_Dyn);
  for (uint64_t i = 0; i < entries; ++i) {
    const Elf64_Dyn entry = image.read<Elf64_Dyn>(dynamic.p_offset + i * sizeof(Elf64_Dyn), "a dynamic entry");
    const uint64_t value = entry.d_un.d_val;
    switch (entry.d_tag) {
      case DT_NULL:
        return tables;
      case DT_SYMTAB:
        tables.symtab = value;
        break;
      case DT_STRTAB:
        tables.strtab = value;
        break;
      case DT_STRSZ:
        tables.strsz = value;
        break;
      case DT_SYMENT:
        tables.syment = value;
        break;
      case DT_HASH:
        tables.hash = value;
        break;
      case DT_GNU_HASH:
        tables.gnu_hash = value;
        break;
      default:
        break;
    }
  }
  return tables;
}

// The number of dynamic symbols. ELF records it only in the hash tables:
// DT_HASH's nchain, or past the highest symbol that DT_GNU_HASH's chains reach.
uint64_t dynamic_symbol_count(const Image& image, const AddressMap& map, const DynamicTables& tables) {
  if (tables.hash) {
    const uint64_t at = map.offset_of(*tables.hash, 2 * sizeof(uint32_t), "the DT_HASH table");
    return image.read<uint32_t>(at + sizeof(uint32_t), "DT_HASH's nchain");
  }
  if (!tables.gnu_hash) corrupt("a dynamic symbol table without DT_HASH or DT_GNU_HASH");
  const uint64_t header = map.offset_of(*tables.gnu_hash, 4 * sizeof(uint32_t), "the DT_GNU_HASH table");
  const uint32_t buckets = image.read<uint32_t>(header, "DT_GNU_HASH's bucket count");
  const uint32_t first_hashed = image.read<uint32_t>(header + 4, "DT_GNU_HASH's symbol offset");
  const uint32_t bloom_words = image.read<uint32_t>(header + 8, "DT_GNU_HASH's bloom size");
  const std::optional<uint64_t> bloom_bytes = times(bloom_words, sizeof(uint64_t));
  const std::optional<uint64_t> bucket_bytes = times(buckets, sizeof(uint32_t));
  if (!bloom_bytes || !bucket_bytes) corrupt("DT_GNU_HASH's sizes overflow");
  const uint64_t buckets_address = *tables.gnu_hash + 16 + *bloom_bytes;
  const uint64_t bucket_at = map.offset_of(buckets_address, *bucket_bytes, "DT_GNU_HASH's buckets");
  uint32_t highest = 0;
  for (uint32_t i = 0; i < buckets; ++i)
    highest = std::max(highest, image.read<uint32_t>(bucket_at + uint64_t{i} * 4, "a DT_GNU_HASH bucket"));
  if (highest < first_hashed) return first_hashed;
  // Walk the last chain to its end (its low bit set): the symbol after it is the count.
  const uint64_t chains_address = buckets_address + *bucket_bytes;
  for (uint64_t symbol = highest;; ++symbol) {
    const uint64_t address = chains_address + (symbol - first_hashed) * sizeof(uint32_t);
    const uint32_t link = image.read<uint32_t>(map.offset_of(address, sizeof(uint32_t), "a DT_GNU_HASH chain"),
                                               "a DT_GNU_HASH chain");
    if ((link & 1U) != 0) return symbol + 1;
  }
}

// The name, inside the image (valid while the image is).
std::string_view symbol_name(const Image& image, uint64_t strtab_at, uint64_t strsz, uint32_t name) {
  if (name >= strsz) corrupt("a symbol name lies outside the string table");
  const unsigned char* begin = image.at(strtab_at + name);
  const void* end = std::memchr(begin, '\0', strsz - name);
  if (end == nullptr) corrupt("a symbol name runs past the end of the string table");
  return std::string_view(reinterpret_cast<const char*>(begin),
                          static_cast<size_t>(static_cast<const unsigned char*>(end) - begin));
}

// The ABI tag's value, from the file bytes of the loadable segment that holds it.
uint32_t read_abi_tag(const Image& image, const AddressMap& map, const Elf64_Sym& symbol) {
  if (symbol.st_shndx == SHN_UNDEF || ELF64_ST_TYPE(symbol.st_info) != STT_OBJECT ||
      symbol.st_size != sizeof(uint32_t))
    corrupt(std::string("the ABI tag ") + HOTSWAP_ABI_SYMBOL + " is not a defined 4-byte object");
  return image.read<uint32_t>(map.offset_of(symbol.st_value, sizeof(uint32_t), "the ABI tag"), "the ABI tag");
}

// Counts the dynamic symbols, reads the ABI tag and refuses STB_GNU_UNIQUE
// symbols. The dynamic section is what ld.so reads, so it is read here too
// (section headers may be stripped).
void check_dynamic_symbols(const Image& image, const std::vector<Elf64_Phdr>& headers, ElfImageFacts& facts) {
  const Elf64_Phdr* dynamic = nullptr;
  for (const Elf64_Phdr& ph : headers)
    if (ph.p_type == PT_DYNAMIC) {
      dynamic = &ph;
      break;
    }
  if (dynamic == nullptr) corrupt("no dynamic segment (PT_DYNAMIC): not a loadable shared object");
  const DynamicTables tables = read_dynamic(image, *dynamic);
  if (!tables.symtab) return;
  if (tables.syment && *tables.syment != sizeof(Elf64_Sym))
    corrupt("dynamic symbol size " + std::to_string(*tables.syment) + ", expected " + std::to_string(sizeof(Elf64_Sym)));
  if (!tables.strtab || !tables.strsz) corrupt("a dynamic symbol table without its string table");

  const AddressMap map(headers);
  const uint64_t count = dynamic_symbol_count(image, map, tables);
  const std::optional<uint64_t> symbol_bytes = times(count, sizeof(Elf64_Sym));
  if (!symbol_bytes) corrupt("the dynamic symbol count overflows");
  const uint64_t symtab_at = map.offset_of(*tables.symtab, *symbol_bytes, "the dynamic symbol table");
  const uint64_t strtab_at = map.offset_of(*tables.strtab, *tables.strsz, "the dynamic string table");

  std::vector<std::string> unique;
  size_t unique_count = 0;
  constexpr std::string_view kAbiTag = HOTSWAP_ABI_SYMBOL;
  for (uint64_t i = 0; i < count; ++i) {
    const Elf64_Sym symbol = image.read<Elf64_Sym>(symtab_at + i * sizeof(Elf64_Sym), "a dynamic symbol");
    if (ELF64_ST_BIND(symbol.st_info) == STB_GLOBAL && symbol.st_shndx != SHN_UNDEF &&
        symbol_name(image, strtab_at, *tables.strsz, symbol.st_name) == kAbiTag) {
      if (facts.module_abi) corrupt(std::string("two ABI tags (") + HOTSWAP_ABI_SYMBOL + ")");
      facts.module_abi = read_abi_tag(image, map, symbol);
    }
    if (ELF64_ST_BIND(symbol.st_info) != STB_GNU_UNIQUE) continue;
    ++unique_count;
    if (unique.size() < kUniqueNamesShown)
      unique.emplace_back(symbol_name(image, strtab_at, *tables.strsz, symbol.st_name));
  }
  if (unique_count > 0) {
    std::string names;
    for (const std::string& name : unique) names += (names.empty() ? "" : ", ") + name;
    if (unique_count > unique.size()) names += " and " + std::to_string(unique_count - unique.size()) + " more";
    throw ElfImageError(ElfImageError::Kind::GnuUnique,
                        std::to_string(unique_count) + " STB_GNU_UNIQUE symbol(s) (" + names +
                            "): glibc never unloads such a library, so a new version would keep the old one's "
                            "data. Build the module with -fno-gnu-unique (hotswap_add_module does)");
  }
  facts.dynamic_symbols = count;
}

}  // namespace

ElfImageFacts check_elf_image(const unsigned char* data, size_t size) {
  const Image image(data, size);
  check_identity(image);
  const Elf64_Ehdr header = image.read<Elf64_Ehdr>(0, "the ELF header");
  check_header(header, size);
  const std::vector<Elf64_Phdr> headers = read_program_headers(image, header);
  ElfImageFacts facts;
  facts.program_headers = headers.size();
  check_dynamic_symbols(image, headers, facts);
  return facts;
}

}  // namespace hotswap::host
