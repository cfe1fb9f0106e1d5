// The `hotswap` command: runs a host (start, daemon) and talks to a running one
// over its admin socket (everything else). `hotswap --help` lists the commands;
// host/README.md documents them, their output and their exit statuses.
#include <fcntl.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/filesystem.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "admin/admin_client.hpp"
#include "admin/admin_commands.hpp"
#include "core/allocator_tuning.hpp"
#include "os/pid_file.hpp"
#include "release/release_store.hpp"
#include "runtime.hpp"
#include "release/runtime_config.hpp"

namespace fs = boost::filesystem;
using hotswap::host::AdminClient;
using hotswap::host::NotRunning;
using nlohmann::json;

namespace {

// Exit statuses (sysexits.h where one fits).
constexpr int kOk = 0;
constexpr int kFailed = 1;       // the command ran and failed (refused, rolled back, error reply)
constexpr int kUsage = 64;       // EX_USAGE: bad command line
constexpr int kNotRunning = 69;  // EX_UNAVAILABLE: no host answers on the admin socket
constexpr int kBusy = 75;        // EX_TEMPFAIL: another upgrade is running; try again
constexpr int kConfig = 78;      // EX_CONFIG: the runtime config is invalid

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Command {
  const char* name;
  const char* args;
  const char* help;
};

const Command kCommands[] = {
    {"start", "[--log-level LEVEL]", "run the host in the foreground on the permanent release"},
    {"daemon", "[--log-level LEVEL]", "run the host in the background (log: ROOT/log/hotswap.log)"},
    {"stop", "", "stop the running host gracefully"},
    {"remote", "", "interactive admin shell (line editing, history)"},
    {"status", "[--json]", "release, modules, connections, last upgrade"},
    {"reload", "[--json]", "upgrade to the newest unpacked release, or re-read the runtime config"},
    {"unpack", "FILE.tar.gz [--json]", "unpack a release tarball under ROOT/releases"},
    {"plan", "VSN [--json]", "print the steps of an upgrade or downgrade to VSN without doing it"},
    {"upgrade", "VSN [--pre-task MODULE:TASK[:JSON]] [--json]", "upgrade to the newer release VSN"},
    {"downgrade", "VSN [--json]", "downgrade to the older release VSN"},
    {"releases", "[--json]", "list releases and their states"},
    {"make-permanent", "VSN", "boot VSN on restart (it must be running)"},
    {"remove", "VSN", "delete an unpacked or old release"},
    {"task", "MODULE NAME [JSON] [--release VSN] [--json]",
     "run a module's task on a fresh instance of a release, serving no traffic"},
    {"log-level", "LEVEL", "set the running host's log level (trace..off)"},
};

void print_usage(std::ostream& out) {
  out << "usage: hotswap COMMAND [--root DIR] [ARGS]\n\n"
         "DIR defaults to $HOTSWAP_ROOT, else the current folder.\n\ncommands:\n";
  for (const Command& c : kCommands) {
    std::string head = std::string(c.name) + " " + c.args;
    out << "  " << head << "\n      " << c.help << "\n";
  }
  out << "\nexit status: 0 ok, 1 failed, 64 usage, 69 no host running, 75 busy, 78 config error\n";
}

const Command* find_command(const std::string& name) {
  for (const Command& c : kCommands)
    if (name == c.name) return &c;
  return nullptr;
}

// The command line after the command name: positional words and --flags.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;  // --flag VALUE, or "" for a switch
  bool has(const std::string& o) const { return options.count(o) > 0; }
  std::string get(const std::string& o, const std::string& fallback = "") const {
    auto it = options.find(o);
    return it == options.end() ? fallback : it->second;
  }
};

Args parse_args(const std::vector<std::string>& words) {
  static const std::vector<std::string> with_value = {"--root", "--log-level", "--pre-task", "--release"};
  static const std::vector<std::string> switches = {"--json", "--help", "-h"};
  Args args;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (std::find(with_value.begin(), with_value.end(), w) != with_value.end()) {
      if (i + 1 >= words.size()) throw UsageError(w + " needs a value");
      args.options[w] = words[++i];
    } else if (std::find(switches.begin(), switches.end(), w) != switches.end()) {
      args.options[w == "-h" ? "--help" : w] = "";
    } else if (w.size() > 1 && w[0] == '-' && w != "-") {
      throw UsageError("unknown option " + w);
    } else {
      args.positional.push_back(w);
    }
  }
  return args;
}

void expect_positional(const Args& args, size_t min, size_t max, const Command& c) {
  if (args.positional.size() < min || args.positional.size() > max)
    throw UsageError(std::string("usage: hotswap ") + c.name + " " + c.args);
}

fs::path root_of(const Args& args) {
  if (args.has("--root")) return fs::absolute(args.get("--root"));
  if (const char* env = std::getenv("HOTSWAP_ROOT")) return fs::absolute(env);
  return fs::current_path();
}

fs::path admin_socket(const fs::path& root) { return root / "run" / "admin.sock"; }

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("hotswap");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  if (!level.empty()) spdlog::set_level(spdlog::level::from_str(level));
}

// ---- running a host ----

// Every connection is a descriptor: the default soft limit (often 1024) would
// cap a game server far below what the machine allows.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
    spdlog::warn("cannot raise the descriptor limit: {}", std::strerror(errno));
}

int run_host(const fs::path& root, const std::string& log_level) {
  hotswap::host::tune_allocator_for_short_pauses();
  raise_descriptor_limit();
  try {
    hotswap::host::ReleaseStore probe(root);
    hotswap::host::PidFile pid_file(probe.run_dir() / "hotswap.pid");
    hotswap::host::Runtime runtime(root);
    runtime.boot();
    if (!log_level.empty()) runtime.set_log_level(log_level);  // the flag wins over runtime.json
    runtime.open_admin(hotswap::host::make_admin_handler(runtime));
    spdlog::info("hotswap host pid {} serving root {}", ::getpid(), root.string());
    runtime.run();
    return kOk;
  } catch (const hotswap::host::ConfigError& e) {
    spdlog::critical("{}", e.what());
    return kConfig;
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return kFailed;
  }
}

int cmd_daemon(const fs::path& root, const std::string& log_level) {
  hotswap::host::ReleaseStore store(root);
  fs::path log_file = store.log_dir() / "hotswap.log";
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (child == 0) {
    ::setsid();
    int null_fd = ::open("/dev/null", O_RDONLY);
    int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null_fd < 0 || log_fd < 0) ::_exit(kFailed);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::close(null_fd);
    ::close(log_fd);
    setup_logging(log_level);
    ::_exit(run_host(root, log_level));
  }
  // Ready when the admin socket answers; failed when the child exits first.
  for (int waited_ms = 0; waited_ms < 30000; waited_ms += 50) {
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) {
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : kFailed;
      std::cerr << "hotswap: the host exited during boot (status " << code << "); see " << log_file.string() << "\n";
      return code == kOk ? kFailed : code;
    }
    try {
      AdminClient client(admin_socket(root));
      json reply = client.request({{"cmd", "status"}});
      if (reply.value("ok", false)) {
        std::cout << "hotswap: host pid " << child << " running release "
                  << reply["result"]["version"].get<std::string>() << " (log: " << log_file.string() << ")\n";
        return kOk;
      }
    } catch (const NotRunning&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cerr << "hotswap: the host did not answer within 30 s; see " << log_file.string() << "\n";
  return kFailed;
}

// ---- talking to a host ----

double as_double(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0;
}

void print_event(const json& e) {
  std::string kind = e.value("event", "?");
  if (kind == "check")
    std::cout << "  check: loading and verifying " << e.value("steps", 0) << " step(s)\n";
  else if (kind == "loaded")
    std::cout << "  loaded and checked in " << as_double(e, "check_ms") << " ms\n";
  else if (kind == "pre_task")
    std::cout << "  pre-upgrade task " << e.value("module", "") << ":" << e.value("task", "") << "\n";
  else if (kind == "pre_task_done")
    std::cout << "  pre-upgrade task done: " << e.value("result", "") << "\n";
  else if (kind == "paused")
    std::cout << "  paused: " << e["modules"].dump() << "\n";
  else if (kind == "step")
    std::cout << "  step " << e.value("index", 0) << ": " << e.value("step", "") << " ... "
              << (e.value("ok", false) ? "ok" : "FAILED: " + e.value("error", "")) << " (" << as_double(e, "ms")
              << " ms)\n";
  else if (kind == "committed")
    std::cout << "  committed; pause " << as_double(e, "pause_us") << " us\n";
  else if (kind == "rolled_back")
    std::cout << "  rolled back (pause " << as_double(e, "pause_us") << " us): " << e.value("error", "") << "\n";
  else if (kind == "refused")
    std::cout << "  refused: " << e.value("error", "") << "\n";
  else if (kind == "purged")
    std::cout << "  old code unloaded in " << as_double(e, "purge_ms") << " ms\n";
  else
    std::cout << "  " << e.dump() << "\n";
}

void print_status(const json& s) {
  std::cout << "release " << s["release"].get<std::string>() << " " << s["version"].get<std::string>()
            << (s["permanent"] == s["version"] ? " (permanent)" : " (not permanent)") << ", pid " << s["pid"] << ", up "
            << static_cast<long>(s["uptime_s"].get<double>()) << " s\n";
  std::cout << "connections " << s["connections"] << "\n";
  for (const auto& l : s["listeners"])
    std::cout << "listener " << l["name"].get<std::string>() << " " << l["address"].get<std::string>() << ":"
              << l["port"] << " -> " << l["module"].get<std::string>() << "\n";
  for (const auto& m : s["modules"])
    std::cout << "module " << m["name"].get<std::string>() << " " << m["version"].get<std::string>() << " (schema "
              << m["state_schema"] << ", " << m["events"] << " events, " << m["failed_events"] << " failed)\n";
  const json& last = s["last_upgrade"];
  if (last.is_object())
    std::cout << "last upgrade: " << last["direction"].get<std::string>() << " " << last["from"].get<std::string>()
              << " -> " << last["to"].get<std::string>() << " " << last["outcome"].get<std::string>() << ", pause "
              << as_double(last, "pause_us") << " us" << (last["error"].get<std::string>().empty() ? "" : ": ")
              << last["error"].get<std::string>() << "\n";
  if (!s["leaked_libraries"].empty())
    std::cout << "libraries that stayed mapped: " << s["leaked_libraries"].dump() << "\n";
}

void print_releases(const json& r) {
  for (const auto& rel : r["releases"])
    std::cout << rel["version"].get<std::string>() << "  " << rel["state"].get<std::string>() << "\n";
}

int exit_code_of(const json& reply) {
  if (reply.value("ok", false)) return kOk;
  return reply.value("code", "") == "busy" ? kBusy : kFailed;
}

// Builds the admin request for a CLI command; nullopt for commands that are not requests.
json request_for(const std::string& name, const Args& args) {
  const Command& c = *find_command(name);
  if (name == "status" || name == "reload" || name == "releases") {
    expect_positional(args, 0, 0, c);
    return {{"cmd", name}};
  }
  if (name == "stop") {
    expect_positional(args, 0, 0, c);
    return {{"cmd", "stop"}};
  }
  if (name == "unpack") {
    expect_positional(args, 1, 1, c);
    return {{"cmd", "unpack"}, {"file", fs::absolute(args.positional[0]).string()}};
  }
  if (name == "log-level") {
    expect_positional(args, 1, 1, c);
    return {{"cmd", "log-level"}, {"level", args.positional[0]}};
  }
  expect_positional(args, 1, 1, c);
  json request = {{"cmd", name}, {"version", args.positional[0]}};
  if (args.has("--pre-task")) {
    if (name != "upgrade") throw UsageError("--pre-task goes with upgrade");
    std::string spec = args.get("--pre-task");
    size_t a = spec.find(':');
    if (a == std::string::npos || a == 0) throw UsageError("--pre-task MODULE:TASK[:JSON]");
    size_t b = spec.find(':', a + 1);
    json task = {{"module", spec.substr(0, a)}, {"task", spec.substr(a + 1, b == std::string::npos ? b : b - a - 1)}};
    if (b != std::string::npos) {
      task["args"] = json::parse(spec.substr(b + 1), nullptr, false);
      if (task["args"].is_discarded()) throw UsageError("--pre-task: the arguments are not valid JSON");
    }
    request["pre_task"] = task;
  }
  return request;
}

// Prints a reply the way an operator reads it (or as JSON).
void print_reply(const std::string& name, const json& reply, bool as_json) {
  if (as_json) {
    std::cout << (reply.value("ok", false) ? reply["result"] : reply).dump(2) << "\n";
    return;
  }
  if (!reply.value("ok", false)) {
    std::cerr << "hotswap " << name << ": " << reply.value("error", "failed") << "\n";
    return;
  }
  const json& r = reply["result"];
  if (name == "status") return print_status(r);
  if (name == "releases") return print_releases(r);
  if (name == "plan") {
    std::cout << r["text"].get<std::string>() << "\n";
    return;
  }
  if (name == "upgrade" || name == "downgrade" || (name == "reload" && r.value("action", "") == "upgrade")) {
    const json& report = name == "reload" ? r["report"] : r;
    std::cout << report["direction"].get<std::string>() << " " << report["from"].get<std::string>() << " -> "
              << report["to"].get<std::string>() << ": " << report["outcome"].get<std::string>() << ", pause "
              << as_double(report, "pause_us") << " us\n";
    return;
  }
  if (name == "reload") {
    std::cout << (r["action"] == "config" ? "runtime config reloaded" : "nothing to reload") << " (release "
              << r.value("release", "?") << ")\n";
    return;
  }
  if (name == "unpack")
    std::cout << "unpacked release " << r["version"].get<std::string>() << "\n";
  else if (name == "make-permanent")
    std::cout << "release " << r["permanent"].get<std::string>() << " is permanent\n";
  else if (name == "remove")
    std::cout << "removed release " << r["removed"].get<std::string>() << "\n";
  else if (name == "log-level")
    std::cout << "log level " << r["level"].get<std::string>() << "\n";
  else if (name == "stop")
    std::cout << "stopping\n";
}

int send_request(AdminClient& client, const std::string& name, const json& request, bool as_json) {
  bool streams = name == "upgrade" || name == "downgrade" || name == "reload";
  json reply = client.request(request, [&](const json& event) {
    if (streams && !as_json) print_event(event);
  });
  print_reply(name, reply, as_json);
  return exit_code_of(reply);
}

// Commands that work on the release folder when no host runs.
int offline(const fs::path& root, const std::string& name, const Args& args) {
  hotswap::host::ReleaseStore store(root);
  json result;
  if (name == "unpack") {
    expect_positional(args, 1, 1, *find_command(name));
    result = {{"version", store.unpack(args.positional[0])}};
  } else if (name == "releases") {
    result = store.to_json();
  } else {
    expect_positional(args, 1, 1, *find_command(name));
    store.remove(args.positional[0]);
    result = {{"removed", args.positional[0]}};
  }
  print_reply(name, {{"ok", true}, {"result", result}}, args.has("--json"));
  return kOk;
}

int cmd_stop(const fs::path& root) {
  fs::path pid_path = root / "run" / "hotswap.pid";
  {
    AdminClient client(admin_socket(root));
    json reply = client.request({{"cmd", "stop"}});
    if (!reply.value("ok", false)) {
      std::cerr << "hotswap stop: " << reply.value("error", "failed") << "\n";
      return kFailed;
    }
  }
  for (int waited_ms = 0; waited_ms < 60000; waited_ms += 50) {
    if (!hotswap::host::PidFile::running(pid_path)) {
      std::cout << "stopped\n";
      return kOk;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cerr << "hotswap stop: the host is still running after 60 s\n";
  return kFailed;
}

int cmd_task(const fs::path& root, const Args& args) {
  expect_positional(args, 2, 3, *find_command("task"));
  hotswap::host::ReleaseStore store(root);
  std::string version = args.has("--release") ? args.get("--release") : store.permanent().value_or("");
  if (version.empty()) {
    auto all = store.list();
    if (all.empty()) throw std::runtime_error("no release under " + store.releases_dir().string());
    version = all.back().version;
  }
  hotswap::host::ReleaseTask task;
  task.module = args.positional[0];
  task.name = args.positional[1];
  if (args.positional.size() == 3) {
    task.args = json::parse(args.positional[2], nullptr, false);
    if (task.args.is_discarded()) throw UsageError("task arguments are not valid JSON: " + args.positional[2]);
  }
  hotswap::host::RuntimeConfig config = hotswap::host::load_runtime_config(store.runtime_config_path(version));
  hotswap::host::LibraryLoader loader(store.run_dir());
  std::string result = hotswap::host::run_release_task(store.release_dir(version), config, task, loader);
  if (args.has("--json"))
    std::cout << json{{"release", version}, {"module", task.module}, {"task", task.name}, {"result", result}}.dump(2)
              << "\n";
  else
    std::cout << result << "\n";
  return kOk;
}

std::vector<std::string> split_words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

int cmd_remote(const fs::path& root) {
  AdminClient client(admin_socket(root));
  fs::path history = root / "run" / "remote_history";
  ::read_history(history.c_str());
  std::cout << "connected to the host at " << root.string() << "; 'help' lists commands, Ctrl-D leaves\n";
  while (char* raw = ::readline("hotswap> ")) {
    std::string line(raw);
    std::free(raw);
    std::vector<std::string> words = split_words(line);
    if (words.empty()) continue;
    ::add_history(line.c_str());
    if (words[0] == "help") {
      print_usage(std::cout);
      continue;
    }
    if (words[0] == "quit" || words[0] == "exit") break;
    const Command* c = find_command(words[0]);
    if (c == nullptr || std::string(c->name) == "start" || std::string(c->name) == "daemon" ||
        std::string(c->name) == "remote" || std::string(c->name) == "task") {
      std::cout << "not an admin command here: " << words[0] << "\n";
      continue;
    }
    try {
      Args args = parse_args(std::vector<std::string>(words.begin() + 1, words.end()));
      send_request(client, c->name, request_for(c->name, args), args.has("--json"));
      if (words[0] == "stop") break;
    } catch (const UsageError& e) {
      std::cout << e.what() << "\n";
    }
  }
  ::write_history(history.c_str());
  return kOk;
}

int dispatch(const std::string& name, const Args& args) {
  const Command* command = find_command(name);
  if (command == nullptr) throw UsageError("unknown command '" + name + "' (hotswap --help lists them)");
  if (args.has("--help")) {
    std::cout << "usage: hotswap " << command->name << " [--root DIR] " << command->args << "\n  " << command->help
              << "\n";
    return kOk;
  }
  fs::path root = root_of(args);
  if (name == "start") {
    expect_positional(args, 0, 0, *command);
    setup_logging(args.get("--log-level"));
    return run_host(root, args.get("--log-level"));
  }
  if (name == "daemon") {
    expect_positional(args, 0, 0, *command);
    return cmd_daemon(root, args.get("--log-level"));
  }
  if (name == "task") return cmd_task(root, args);
  if (name == "stop") return cmd_stop(root);
  if (name == "remote") return cmd_remote(root);
  json request = request_for(name, args);  // usage errors before trying to connect
  try {
    AdminClient client(admin_socket(root));
    return send_request(client, name, request, args.has("--json"));
  } catch (const NotRunning& e) {
    if (name == "unpack" || name == "releases" || name == "remove") return offline(root, name, args);
    throw;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
  if (words.empty() || words[0] == "--help" || words[0] == "-h" || words[0] == "help") {
    print_usage(words.empty() ? std::cerr : std::cout);
    return words.empty() ? kUsage : kOk;
  }
  std::string name = words[0];
  try {
    Args args = parse_args(std::vector<std::string>(words.begin() + 1, words.end()));
    return dispatch(name, args);
  } catch (const UsageError& e) {
    std::cerr << "hotswap " << name << ": " << e.what() << "\n";
    return kUsage;
  } catch (const NotRunning& e) {
    std::cerr << "hotswap " << name << ": " << e.what() << "\n";
    return kNotRunning;
  } catch (const hotswap::host::ConfigError& e) {
    std::cerr << "hotswap " << name << ": " << e.what() << "\n";
    return kConfig;
  } catch (const std::exception& e) {
    std::cerr << "hotswap " << name << ": " << e.what() << "\n";
    return kFailed;
  }
}
