// Linked into an otherwise good module (counter 1.1.0 in tests/cli): a static
// constructor that writes through a null pointer while dlopen runs it. The
// live host must meet it only in its probe child, and serve on.
namespace {

struct SegfaultsWhileLoading {
  SegfaultsWhileLoading() {
    // Volatile both ways: the compiler can neither see the null nor drop the write.
    volatile int* volatile nowhere = nullptr;
    *nowhere = 1;
  }
};
const SegfaultsWhileLoading segfaults_while_loading;

}  // namespace
