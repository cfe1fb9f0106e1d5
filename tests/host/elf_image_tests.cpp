// check_elf_image on real libraries and on hand-made corrupt copies of one:
// every refusal names what is wrong, and no byte pattern makes it read
// outside the span (the ASan build checks that).
#include <elf.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <hotswap/module.h>
#include <iterator>
#include <optional>
#include <random>
#include <vector>

#include "core/elf_image.hpp"
#include "loader_test_support.hpp"
#include "test_support.hpp"

using hotswap::host::check_elf_image;
using hotswap::host::ElfImageError;
using Bytes = std::vector<unsigned char>;

namespace {

Bytes read_bytes(const boost::filesystem::path& file) {
  std::ifstream in(file.string(), std::ios::binary);
  REQUIRE(in);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

Bytes good_library() { return read_bytes(hotswap::test::module_file("good", "counter", "1.0.0")); }

Elf64_Ehdr header_of(const Bytes& image) {
  Elf64_Ehdr header;
  std::memcpy(&header, image.data(), sizeof header);
  return header;
}
void set_header(Bytes& image, const Elf64_Ehdr& header) { std::memcpy(image.data(), &header, sizeof header); }

Elf64_Phdr program_header(const Bytes& image, size_t index) {
  const Elf64_Ehdr header = header_of(image);
  Elf64_Phdr ph;
  std::memcpy(&ph, image.data() + header.e_phoff + index * sizeof(Elf64_Phdr), sizeof ph);
  return ph;
}
void set_program_header(Bytes& image, size_t index, const Elf64_Phdr& ph) {
  const Elf64_Ehdr header = header_of(image);
  std::memcpy(image.data() + header.e_phoff + index * sizeof(Elf64_Phdr), &ph, sizeof ph);
}
size_t first_of_type(const Bytes& image, uint32_t type) {
  for (size_t i = 0; i < header_of(image).e_phnum; ++i)
    if (program_header(image, i).p_type == type) return i;
  FAIL("no program header of type " << type);
  return 0;
}

// The offset of the dynamic symbol `name`'s entry (found through the section headers).
size_t dynamic_symbol_offset(const Bytes& image, const std::string& name) {
  const Elf64_Ehdr header = header_of(image);
  for (size_t i = 0; i < header.e_shnum; ++i) {
    Elf64_Shdr symbols;
    std::memcpy(&symbols, image.data() + header.e_shoff + i * sizeof(Elf64_Shdr), sizeof symbols);
    if (symbols.sh_type != SHT_DYNSYM) continue;
    Elf64_Shdr strings;
    std::memcpy(&strings, image.data() + header.e_shoff + symbols.sh_link * sizeof(Elf64_Shdr), sizeof strings);
    for (size_t at = symbols.sh_offset; at < symbols.sh_offset + symbols.sh_size; at += sizeof(Elf64_Sym)) {
      Elf64_Sym symbol;
      std::memcpy(&symbol, image.data() + at, sizeof symbol);
      if (name == reinterpret_cast<const char*>(image.data() + strings.sh_offset + symbol.st_name)) return at;
    }
  }
  FAIL("no dynamic symbol " << name);
  return 0;
}

// The image is refused with `kind` and a message containing `text`.
void expect_refused(const Bytes& image, ElfImageError::Kind kind, const std::string& text) {
  try {
    check_elf_image(image.data(), image.size());
    FAIL("the image should have been refused (" << text << ")");
  } catch (const ElfImageError& e) {
    INFO(e.what());
    CHECK(e.kind() == kind);
    CHECK_THAT(e.what(), Catch::Contains(text));
  }
}

}  // namespace

TEST_CASE("a real module library passes and its dynamic symbols are counted", "[elf]") {
  const Bytes image = good_library();
  const hotswap::host::ElfImageFacts facts = check_elf_image(image.data(), image.size());
  CHECK(facts.program_headers > 2);
  CHECK(facts.dynamic_symbols > 1);  // the null symbol and at least the entry symbol
}

TEST_CASE("the ABI tag is read from the file: present, absent, or not a 4-byte object in the file", "[elf]") {
  const Bytes image = good_library();
  CHECK(check_elf_image(image.data(), image.size()).module_abi == std::optional<uint32_t>(HOTSWAP_ABI_VERSION));
  const Bytes newer = read_bytes(hotswap::test::module_file("abi-too-new", "counter", "2.0.0"));
  CHECK(check_elf_image(newer.data(), newer.size()).module_abi == std::optional<uint32_t>(99));
  // A module with a hand-written descriptor and no tag, as built before tags existed.
  const Bytes untagged = read_bytes(hotswap::test::module_file("crashy", "crashy", "1.0.0"));
  CHECK_FALSE(check_elf_image(untagged.data(), untagged.size()).module_abi);

  const size_t tag = dynamic_symbol_offset(image, HOTSWAP_ABI_SYMBOL);
  Elf64_Sym symbol;
  std::memcpy(&symbol, image.data() + tag, sizeof symbol);
  Bytes wrong_size = image;
  Elf64_Sym resized = symbol;
  resized.st_size = 8;
  std::memcpy(wrong_size.data() + tag, &resized, sizeof resized);
  expect_refused(wrong_size, ElfImageError::Kind::Corrupt, "the ABI tag hotswap_module_abi is not a defined 4-byte object");
  Bytes elsewhere = image;
  Elf64_Sym moved = symbol;
  moved.st_value = 0x7fff0000;
  std::memcpy(elsewhere.data() + tag, &moved, sizeof moved);
  expect_refused(elsewhere, ElfImageError::Kind::Corrupt, "the ABI tag at address 0x7fff0000");
}

TEST_CASE("text and empty files are not ELF files", "[elf]") {
  const std::string text = "this is text, not a shared object\n";
  expect_refused(Bytes(text.begin(), text.end()), ElfImageError::Kind::NotElf, "not an ELF file");
  CHECK_THROWS_AS(check_elf_image(nullptr, 0), ElfImageError);
  const Bytes magic_only = {0x7f, 'E', 'L', 'F'};
  expect_refused(magic_only, ElfImageError::Kind::NotElf, "not an ELF file");
}

TEST_CASE("another class, byte order or machine is refused", "[elf]") {
  Bytes image = good_library();
  image[EI_CLASS] = ELFCLASS32;
  expect_refused(image, ElfImageError::Kind::WrongTarget, "32-bit");
  image = good_library();
  image[EI_DATA] = ELFDATA2MSB;
  expect_refused(image, ElfImageError::Kind::WrongTarget, "byte order");
  image = good_library();
  Elf64_Ehdr header = header_of(image);
  header.e_machine = header.e_machine == EM_AARCH64 ? EM_X86_64 : EM_AARCH64;
  set_header(image, header);
  expect_refused(image, ElfImageError::Kind::WrongTarget, "built for ELF machine");
}

TEST_CASE("an executable or relocatable object is not a shared object", "[elf]") {
  Bytes image = good_library();
  Elf64_Ehdr header = header_of(image);
  header.e_type = ET_EXEC;
  set_header(image, header);
  expect_refused(image, ElfImageError::Kind::NotSharedObject, "not a shared object");
}

TEST_CASE("header tables that leave the file are refused", "[elf]") {
  SECTION("the program header table") {
    Bytes image = good_library();
    Elf64_Ehdr header = header_of(image);
    header.e_phoff = image.size() - 8;
    set_header(image, header);
    expect_refused(image, ElfImageError::Kind::Corrupt, "program header table");
  }
  SECTION("a program header count that overflows the offset") {
    Bytes image = good_library();
    Elf64_Ehdr header = header_of(image);
    header.e_phoff = UINT64_MAX - 16;
    set_header(image, header);
    expect_refused(image, ElfImageError::Kind::Corrupt, "program header table");
  }
  SECTION("the section header table") {
    Bytes image = good_library();
    Elf64_Ehdr header = header_of(image);
    header.e_shnum = static_cast<uint16_t>(header.e_shnum + 100);
    set_header(image, header);
    expect_refused(image, ElfImageError::Kind::Corrupt, "section header table");
  }
  SECTION("a program header entry size that is not Elf64_Phdr's") {
    Bytes image = good_library();
    Elf64_Ehdr header = header_of(image);
    header.e_phentsize = 12;
    set_header(image, header);
    expect_refused(image, ElfImageError::Kind::Corrupt, "program header size 12");
  }
}

TEST_CASE("a program header whose file range leaves the file is refused", "[elf]") {
  SECTION("past the end") {
    Bytes image = good_library();
    const size_t load = first_of_type(image, PT_LOAD);
    Elf64_Phdr ph = program_header(image, load);
    ph.p_filesz = image.size();
    ph.p_memsz = std::max(ph.p_memsz, ph.p_filesz);
    ph.p_offset = 16;
    set_program_header(image, load, ph);
    expect_refused(image, ElfImageError::Kind::Corrupt, "is the file truncated?");
  }
  SECTION("an offset and size whose sum overflows") {
    Bytes image = good_library();
    const size_t load = first_of_type(image, PT_LOAD);
    Elf64_Phdr ph = program_header(image, load);
    ph.p_offset = UINT64_MAX - 4;
    ph.p_filesz = 16;
    set_program_header(image, load, ph);
    expect_refused(image, ElfImageError::Kind::Corrupt, "program header");
  }
  SECTION("more bytes in the file than in memory") {
    Bytes image = good_library();
    const size_t load = first_of_type(image, PT_LOAD);
    Elf64_Phdr ph = program_header(image, load);
    ph.p_memsz = ph.p_filesz - 1;
    set_program_header(image, load, ph);
    expect_refused(image, ElfImageError::Kind::Corrupt, "more bytes in the file than in memory");
  }
  SECTION("a dynamic table that points outside every loadable segment") {
    Bytes image = good_library();
    const size_t dynamic = first_of_type(image, PT_DYNAMIC);
    const Elf64_Phdr ph = program_header(image, dynamic);
    for (uint64_t at = ph.p_offset; at + sizeof(Elf64_Dyn) <= ph.p_offset + ph.p_filesz; at += sizeof(Elf64_Dyn)) {
      Elf64_Dyn entry;
      std::memcpy(&entry, image.data() + at, sizeof entry);
      if (entry.d_tag == DT_SYMTAB) {
        entry.d_un.d_ptr = 0x7fff00000000ULL;
        std::memcpy(image.data() + at, &entry, sizeof entry);
      }
    }
    expect_refused(image, ElfImageError::Kind::Corrupt, "the dynamic symbol table");
  }
}

TEST_CASE("every truncation of a library is refused", "[elf]") {
  const Bytes image = good_library();
  for (size_t size = 0; size < image.size(); size += std::max<size_t>(1, image.size() / 97)) {
    INFO("truncated to " << size << " of " << image.size() << " bytes");
    CHECK_THROWS_AS(check_elf_image(image.data(), size), ElfImageError);
  }
  CHECK_THROWS_AS(check_elf_image(image.data(), image.size() - 1), ElfImageError);
}

TEST_CASE("random corruption of the headers and tables never reads outside the image", "[elf]") {
  const Bytes original = good_library();
  std::mt19937_64 random(20261130);  // fixed: a failure reproduces
  std::uniform_int_distribution<size_t> any_byte(0, original.size() - 1);
  std::uniform_int_distribution<size_t> header_byte(0, std::min<size_t>(original.size(), 4096) - 1);
  std::uniform_int_distribution<int> value(0, 255);
  size_t refused = 0;
  for (int round = 0; round < 2000; ++round) {
    Bytes image = original;
    const int flips = 1 + round % 8;
    for (int i = 0; i < flips; ++i) image[round % 2 == 0 ? header_byte(random) : any_byte(random)] = value(random);
    try {
      check_elf_image(image.data(), image.size());
    } catch (const ElfImageError&) {
      ++refused;
    }
  }
  CHECK(refused > 0);  // the corruption did reach the checks
}

TEST_CASE("STB_GNU_UNIQUE symbols are refused, named, with the flag that avoids them", "[elf]") {
  for (const std::string hash : {"gnu", "sysv"}) {
    INFO("hash style " << hash);
    const boost::filesystem::path file = hotswap::test::module_file("unique-" + hash, "unique", "1.0.0");
    // Not vacuous: the toolchain really emitted UNIQUE symbols into this library.
    CHECK_THAT(hotswap::test::command_output("readelf --dyn-syms -W " + file.string()), Catch::Contains("UNIQUE"));
    const Bytes image = read_bytes(file);
    expect_refused(image, ElfImageError::Kind::GnuUnique, "-fno-gnu-unique");
    expect_refused(image, ElfImageError::Kind::GnuUnique, "Tally");
  }
}
