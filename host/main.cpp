// The `hotswap` command (being built: see host/README.md when it lands).
#include <cstdio>

int main() {
  std::fprintf(stderr, "hotswap: not yet wired\n");
  return 64;
}
