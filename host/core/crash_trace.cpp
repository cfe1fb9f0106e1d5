#include "core/crash_trace.hpp"

#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <boost/filesystem/operations.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace hotswap::host {
namespace {

// ---- interned labels ---------------------------------------------------------

struct LabelStore {
  std::mutex mutex;
  // A map's nodes never move: each label points into its own key's strings.
  std::map<std::pair<std::string, std::string>, ModuleLabel> labels;
};

LabelStore& label_store() {
  // Never destroyed: a signal handler or the watchdog may read a label while
  // the process exits.
  static LabelStore* store = new LabelStore;
  return *store;
}

// ---- async-signal-safe formatting ---------------------------------------------

class LineWriter {
 public:
  LineWriter(char* out, size_t capacity) : out_(out), capacity_(capacity) {}
  void text(const char* s) {
    if (s == nullptr) s = "?";
    while (*s != '\0') put(*s++);
  }
  void number(uint64_t n, int min_digits = 1) {
    char digits[20];
    int count = 0;
    do {
      digits[count++] = char('0' + n % 10);
      n /= 10;
    } while (n != 0 && count < 20);
    for (int i = count; i < min_digits; ++i) put('0');
    while (count > 0) put(digits[--count]);
  }
  // Ends the line, keeping room for its '\n' even when the text was cut.
  size_t finish() {
    if (capacity_ == 0) return 0;
    if (used_ == capacity_) --used_;
    out_[used_++] = '\n';
    return used_;
  }

 private:
  void put(char c) {
    if (used_ < capacity_) out_[used_++] = c;
  }
  char* out_;
  size_t capacity_;
  size_t used_ = 0;
};

// Async-signal-safe: no strsignal, no allocation.
const char* fatal_signal_name(int signal) {
  switch (signal) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
    default:
      return "signal";
  }
}

// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm): gmtime_r
// is not on the async-signal-safe list.
void write_utc(LineWriter& w, int64_t epoch_seconds) {
  int64_t days = epoch_seconds / 86400;
  int64_t secs = epoch_seconds % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  w.number(uint64_t(year < 0 ? 0 : year), 4);
  w.text("-");
  w.number(uint64_t(month), 2);
  w.text("-");
  w.number(uint64_t(day), 2);
  w.text(" ");
  w.number(uint64_t(secs / 3600), 2);
  w.text(":");
  w.number(uint64_t(secs / 60 % 60), 2);
  w.text(":");
  w.number(uint64_t(secs % 60), 2);
  w.text(" UTC");
}

// ---- the handler ------------------------------------------------------------

constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

// Set once by install_crash_handler, before the handler can run.
char g_crash_file[4096];

// A second fatal signal while the line is being written (a fault in the
// handler itself, or two threads crashing) must not write twice or loop.
std::atomic<bool> g_handling{false};
std::atomic<bool> g_line_written{false};

void write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    size -= size_t(n);
  }
}

void on_fatal_signal(int signal, siginfo_t*, void*) {
  const int saved_errno = errno;
  if (!g_handling.exchange(true)) {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    char line[1024];
    const size_t size = format_crash_line(line, sizeof line, signal, this_thread_call_record().current(), now.tv_sec);
    write_all(STDERR_FILENO, line, size);
    if (g_crash_file[0] != '\0') {
      int fd = ::open(g_crash_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd >= 0) {
        write_all(fd, line, size);
        ::fsync(fd);
        ::close(fd);
      }
    }
    g_line_written.store(true);
  } else {
    // Another thread is writing the line (two threads faulting on one corrupted
    // heap): ending the process now would cut it off. Wait for it, bounded, in
    // case that thread is this one, faulting again inside the handler.
    for (int waited_ms = 0; waited_ms < 2000 && !g_line_written.load(); waited_ms += 10) {
      const timespec ten_ms{0, 10 * 1000 * 1000};
      ::nanosleep(&ten_ms, nullptr);
    }
  }
  // The default action, for this signal and for the fault that re-executes on
  // return: a synchronous fault faults again, a raised signal is delivered as
  // soon as the handler returns and unblocks it.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  ::sigaction(signal, &default_action, nullptr);
  ::raise(signal);
  errno = saved_errno;
}

}  // namespace

const ModuleLabel* intern_module_label(std::string_view name, std::string_view version) {
  LabelStore& store = label_store();
  std::lock_guard<std::mutex> lock(store.mutex);
  auto [it, inserted] = store.labels.try_emplace({std::string(name), std::string(version)}, ModuleLabel{});
  if (inserted) it->second = {it->first.first.c_str(), it->first.second.c_str()};
  return &it->second;
}

CallSnapshot CallRecord::snapshot() const noexcept {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const uint64_t before = sequence_.load(std::memory_order_acquire);
    if (before % 2 != 0) continue;
    CallSnapshot snap;
    snap.site = current();
    std::atomic_thread_fence(std::memory_order_acquire);
    if (sequence_.load(std::memory_order_relaxed) != before) continue;
    snap.sequence = before;
    return snap;
  }
  return {};
}

size_t format_crash_line(char* out, size_t capacity, int signal, const CallSite& site, int64_t epoch_seconds) noexcept {
  LineWriter w(out, capacity);
  write_utc(w, epoch_seconds);
  w.text(" critical hotswap: fatal signal ");
  w.text(fatal_signal_name(signal));
  w.text(" (");
  w.number(uint64_t(signal));
  w.text(")");
  if (site.module != nullptr) {
    w.text(" in module ");
    w.text(site.module->name);
    w.text(" ");
    w.text(site.module->version);
    w.text(", callback ");
    w.text(site.callback);
    if (site.has_conn) {
      w.text(", connection ");
      w.number(site.conn);
    }
  } else {
    w.text(" outside any module callback");
  }
  w.text("; the process dies of it (core dump where enabled)");
  return w.finish();
}

void use_alternate_signal_stack() {
  stack_t current{};
  if (::sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE) == 0) return;
  // Per thread, for the thread's life: the stack must outlive any handler that runs on it.
  static thread_local std::unique_ptr<char[]> stack;
  const size_t size = 64 * 1024;
  stack.reset(new char[size]);
  stack_t alternate{};
  alternate.ss_sp = stack.get();
  alternate.ss_size = size;
  alternate.ss_flags = 0;
  if (::sigaltstack(&alternate, nullptr) != 0)
    throw std::runtime_error(std::string("sigaltstack: ") + std::strerror(errno));
}

void install_crash_handler(const boost::filesystem::path& crash_file) {
  const std::string path = crash_file.string();
  if (path.size() >= sizeof g_crash_file) throw std::runtime_error("crash file path is too long: " + path);
  std::memcpy(g_crash_file, path.c_str(), path.size() + 1);
  use_alternate_signal_stack();
  struct sigaction action {};
  action.sa_sigaction = on_fatal_signal;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  for (int signal : kFatalSignals) sigaddset(&action.sa_mask, signal);  // one fatal signal at a time per thread
  for (int signal : kFatalSignals)
    if (::sigaction(signal, &action, nullptr) != 0)
      throw std::runtime_error(std::string("sigaction: ") + std::strerror(errno));
}

std::optional<std::string> take_previous_crash(const boost::filesystem::path& crash_file) {
  boost::system::error_code ec;
  if (!boost::filesystem::exists(crash_file, ec)) return std::nullopt;
  std::string text(4096, '\0');
  {
    std::ifstream in(crash_file.string(), std::ios::binary);
    in.read(text.data(), std::streamsize(text.size()));
    text.resize(size_t(in.gcount()));
  }
  boost::filesystem::remove(crash_file, ec);
  text = text.substr(0, text.find('\n'));
  if (text.empty()) return "(the crash file " + crash_file.string() + " was empty)";
  return text;
}

}  // namespace hotswap::host
