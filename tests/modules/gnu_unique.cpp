// unique 1.0.0, built WITH -fgnu-unique and default visibility (not through
// hotswap_add_module, whose check would refuse it): a template's static data
// member and an inline variable become STB_GNU_UNIQUE symbols, which glibc
// never unloads. The loader must refuse the library before dlopen.
#include <hotswap/module.hpp>

template <typename T>
struct Tally {
  static int count;
};
template <typename T>
int Tally<T>::count = 0;

inline int unique_total = 0;

int bump() { return ++Tally<int>::count + ++unique_total; }

class Unique : public hotswap::Module<Unique> {
 public:
  static constexpr uint32_t kStateSchema = 1;
  Unique(hotswap::Host host, std::string_view config) : Module(host, config) { bump(); }
};

HOTSWAP_MODULE(Unique)
