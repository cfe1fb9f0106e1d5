// Linked into an otherwise good module (counter 1.1.0 in tests/cli): a static
// constructor that writes through a null pointer while dlopen runs it. The
// live host must meet it only in its probe child, and serve on.
#include <cstdint>

namespace {

struct SegfaultsWhileLoading {
  SegfaultsWhileLoading() {
    // Volatile both ways: the compiler can neither see the address nor drop the write.
    // An address in the never-mapped first page, but not null: UBSan's null
    // check would otherwise end the process before the fault happens.
    volatile int* volatile nowhere = reinterpret_cast<volatile int*>(std::uintptr_t{16});
    *nowhere = 1;
  }
};
const SegfaultsWhileLoading segfaults_while_loading;

}  // namespace
