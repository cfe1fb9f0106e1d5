// The call record (which module callback a thread is in), the crash line a
// fatal signal writes, and the handler that writes it and lets the process die.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/module_call.hpp"
#include "test_support.hpp"

using hotswap::host::call_module;
using hotswap::host::CallSite;
using hotswap::host::intern_module_label;
using hotswap::host::ModuleLabel;
using hotswap::host::this_thread_call_record;
namespace fs = boost::filesystem;

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path.string());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string format_line(int signal, const CallSite& site, int64_t epoch_seconds, size_t capacity = 1024) {
  std::string out(capacity, '\0');
  out.resize(hotswap::host::format_crash_line(out.data(), out.size(), signal, site, epoch_seconds));
  return out;
}

// Sees what the call record says while a module sends (from inside its callback).
class RecordAtSend : public hotswap::test::RecordingServices {
 public:
  hotswap_status send(std::string_view module, hotswap_conn_id conn, std::string_view message) override {
    at_send = this_thread_call_record().current();
    return RecordingServices::send(module, conn, message);
  }
  CallSite at_send;
};

struct TempDir {
  fs::path dir = fs::temp_directory_path() / fs::unique_path("hotswap-crash-%%%%%%%%");
  TempDir() { fs::create_directories(dir); }
  ~TempDir() {
    boost::system::error_code ec;
    fs::remove_all(dir, ec);
  }
};

// Forks a child that installs the crash handler, enters `site` and runs
// `crash`; returns its wait status. The child's stderr goes to `stderr_file`.
// No core file: RLIMIT_CORE is 0 in the child.
int run_crashing_child(const fs::path& crash_file, const fs::path& stderr_file, const CallSite& site, void (*crash)()) {
  pid_t child = ::fork();
  if (child == 0) {
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    int fd = ::open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ::dup2(fd, STDERR_FILENO) < 0) ::_exit(100);
    hotswap::host::install_crash_handler(crash_file);
    call_module(site, nullptr, [&] {
      crash();
      return HOTSWAP_OK;
    });
    ::_exit(101);  // the crash did not kill the child
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return status;
}

volatile std::uintptr_t g_null = 0;
// The never-mapped first page, but not null: UBSan's null check would end the
// process before the fault happens.
volatile std::uintptr_t g_unmapped = 16;
void write_through_null() { *reinterpret_cast<volatile int*>(g_unmapped) = 1; }

// Unbounded recursion: the stack overflows, and the handler must still run (on its own stack).
int recurse(int depth) {
  if (g_null == 1) return 0;  // never: the compiler cannot tell
  volatile char frame[256];
  frame[0] = char(depth);
  return recurse(depth + 1) + frame[0];
}
void overflow_the_stack() { (void)recurse(0); }

void abort_now() { std::abort(); }

}  // namespace

TEST_CASE("a module label is interned: same pair, same pointer, and it outlives every library") {
  const ModuleLabel* a = intern_module_label("counter", "1.0.0");
  const ModuleLabel* b = intern_module_label(std::string("counter"), std::string("1.0.0"));
  const ModuleLabel* c = intern_module_label("counter", "1.1.0");
  CHECK(a == b);
  CHECK(a != c);
  CHECK(std::string(a->name) == "counter");
  CHECK(std::string(c->version) == "1.1.0");
}

TEST_CASE("call_module records the site while the call runs, restores the previous one after, nested too") {
  const ModuleLabel* outer = intern_module_label("outer", "1.0.0");
  const ModuleLabel* inner = intern_module_label("inner", "2.0.0");
  CHECK_FALSE(this_thread_call_record().snapshot().inside());
  CallSite seen_outer, seen_inner, seen_after_inner;
  call_module(CallSite{outer, "on_message", true, 42}, nullptr, [&] {
    seen_outer = this_thread_call_record().current();
    call_module(CallSite{inner, "on_tick", false, 0}, nullptr, [&] {
      seen_inner = this_thread_call_record().current();
      return HOTSWAP_OK;
    });
    seen_after_inner = this_thread_call_record().current();
    return HOTSWAP_OK;
  });
  CHECK(seen_outer.module == outer);
  CHECK(std::string(seen_outer.callback) == "on_message");
  CHECK(seen_outer.has_conn);
  CHECK(seen_outer.conn == 42);
  CHECK(seen_inner.module == inner);
  CHECK_FALSE(seen_inner.has_conn);
  CHECK(seen_after_inner.module == outer);
  CHECK(seen_after_inner.conn == 42);
  CHECK_FALSE(this_thread_call_record().snapshot().inside());
  // An exception escaping the call still clears the record.
  call_module(CallSite{outer, "on_timer", false, 0}, nullptr, []() -> hotswap_status { throw 42; });
  CHECK_FALSE(this_thread_call_record().snapshot().inside());
}

TEST_CASE("the data path records module, version, callback and connection of each call") {
  hotswap::host::LibraryLoader loader;
  RecordAtSend services;
  hotswap::host::ModuleRegistry registry(services);
  hotswap::host::ModuleSlot& slot =
      registry.start(loader.load(hotswap::test::module_file("crashy", "crashy", "1.0.0"), {"crashy", "1.0.0", ""}));
  registry.deliver_message(slot, 17, "id");
  REQUIRE(services.last_to(17) == "conn 17");
  REQUIRE(services.at_send.module != nullptr);
  CHECK(std::string(services.at_send.module->name) == "crashy");
  CHECK(std::string(services.at_send.module->version) == "1.0.0");
  CHECK(std::string(services.at_send.callback) == "on_message");
  CHECK(services.at_send.has_conn);
  CHECK(services.at_send.conn == 17);
  CHECK_FALSE(this_thread_call_record().snapshot().inside());
}

TEST_CASE("the crash line names the signal, module, version, callback and connection") {
  const CallSite site{intern_module_label("arena", "2.1.0"), "on_message", true, 7};
  // 2026-11-30 10:05:03 UTC
  CHECK(format_line(SIGSEGV, site, 1796033103) ==
        "2026-11-30 10:05:03 UTC critical hotswap: fatal signal SIGSEGV (11) in module arena 2.1.0, callback "
        "on_message, connection 7; the process dies of it (core dump where enabled)\n");
  CHECK(format_line(SIGABRT, CallSite{site.module, "on_tick", false, 0}, 0) ==
        "1970-01-01 00:00:00 UTC critical hotswap: fatal signal SIGABRT (6) in module arena 2.1.0, callback "
        "on_tick; the process dies of it (core dump where enabled)\n");
  CHECK(format_line(SIGBUS, CallSite{}, 951782400) ==  // 2000-02-29, a leap day
        "2000-02-29 00:00:00 UTC critical hotswap: fatal signal SIGBUS (7) outside any module callback; the "
        "process dies of it (core dump where enabled)\n");
  // Cut to the buffer, still one line.
  CHECK(format_line(SIGSEGV, site, 0, 12) == "1970-01-01 \n");
}

TEST_CASE("take_previous_crash returns the line a crash left and removes the file") {
  TempDir tmp;
  const fs::path file = tmp.dir / "crashed";
  CHECK_FALSE(hotswap::host::take_previous_crash(file).has_value());
  std::ofstream(file.string()) << "the line\nand garbage after it";
  CHECK(hotswap::host::take_previous_crash(file) == std::optional<std::string>("the line"));
  CHECK_FALSE(fs::exists(file));
}

TEST_CASE("a fatal signal inside a module callback writes the line, then the process dies of that signal") {
  TempDir tmp;
  const fs::path crash_file = tmp.dir / "crashed";
  const fs::path log = tmp.dir / "stderr";
  const CallSite site{intern_module_label("arena", "2.1.0"), "on_message", true, 31};
  struct Case {
    const char* name;
    void (*crash)();
    int signal;
    const char* text;
  };
  for (const Case& c :
       {Case{"null write", write_through_null, SIGSEGV, "SIGSEGV"},
        Case{"stack overflow", overflow_the_stack, SIGSEGV, "SIGSEGV"}, Case{"abort", abort_now, SIGABRT, "SIGABRT"}}) {
    INFO(c.name);
    fs::remove(crash_file);
    const int status = run_crashing_child(crash_file, log, site, c.crash);
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == c.signal);
    const std::string expected = std::string("fatal signal ") + c.text + " (" + std::to_string(c.signal) +
                                 ") in module arena 2.1.0, callback on_message, connection 31";
    const std::string logged = read_file(log);
    CHECK_THAT(logged, Catch::Contains(expected));
    CHECK(std::count(logged.begin(), logged.end(), '\n') == 1);  // one line
    CHECK_THAT(read_file(crash_file), Catch::Contains(expected));
  }
}
