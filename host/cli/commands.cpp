#include "cli/commands.hpp"

#include <boost/filesystem.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "check/offline_plan.hpp"
#include "check/release_check.hpp"
#include "cli/exit_status.hpp"
#include "cli/remote_shell.hpp"
#include "cli/reply_printer.hpp"
#include "cli/run_host.hpp"
#include "core/library_loader.hpp"
#include "core/module_probe.hpp"
#include "os/pid_file.hpp"
#include "release/release_store.hpp"
#include "release/runtime_config.hpp"
#include "upgrade/release_task.hpp"

namespace hotswap::cli {
namespace {

namespace fs = boost::filesystem;
using host::AdminClient;
using host::NotRunning;
using nlohmann::json;

// --pre-task MODULE:TASK[:JSON] as the request's {"module", "task", "args"}.
json pre_task_request(const std::string& spec) {
  size_t a = spec.find(':');
  if (a == std::string::npos || a == 0) throw UsageError("--pre-task MODULE:TASK[:JSON], got '" + spec + "'");
  size_t b = spec.find(':', a + 1);
  json task = {{"module", spec.substr(0, a)}, {"task", spec.substr(a + 1, b == std::string::npos ? b : b - a - 1)}};
  if (b != std::string::npos) {
    task["args"] = json::parse(spec.substr(b + 1), nullptr, false);
    if (task["args"].is_discarded()) throw UsageError("--pre-task: the arguments are not valid JSON");
  }
  return task;
}

// unpack, releases and remove work on the release folder when no host runs.
bool works_offline(const std::string& command) {
  return command == "unpack" || command == "releases" || command == "remove";
}

int run_offline(const fs::path& root, const Invocation& invocation) {
  host::ReleaseStore store(root);
  json result;
  if (invocation.command == "unpack") {
    result = {{"version", store.unpack(invocation.file)}};
  } else if (invocation.command == "releases") {
    result = store.to_json();
  } else {
    store.remove(invocation.version);
    result = {{"removed", invocation.version}};
  }
  print_reply(invocation.command, {{"ok", true}, {"result", result}}, invocation.json);
  return kOk;
}

// Asks the host to stop, then waits until it has exited (its pid file lock is free).
int run_stop(const fs::path& root) {
  {
    AdminClient client(admin_socket_path(root));
    json reply = client.request({{"cmd", "stop"}});
    if (!reply.value("ok", false)) {
      std::cerr << "hotswap stop: " << reply.value("error", "failed") << "\n";
      return kFailed;
    }
  }
  const fs::path pid_path = root / "run" / "hotswap.pid";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!host::PidFile::running(pid_path)) {
      std::cout << "stopped\n";
      return kOk;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cerr << "hotswap stop: the host is still running after 60 s\n";
  return kFailed;
}

int run_task(const fs::path& root, const Invocation& invocation) {
  host::ReleaseTask task;
  task.module = invocation.task_module;
  task.name = invocation.task_name;
  if (!invocation.task_args.empty()) {
    task.args = json::parse(invocation.task_args, nullptr, false);
    if (task.args.is_discarded()) throw UsageError("task arguments are not valid JSON: " + invocation.task_args);
  }
  host::ReleaseStore store(root);
  std::string version = invocation.release.empty() ? store.permanent().value_or("") : invocation.release;
  if (version.empty()) {
    auto all = store.list();
    if (all.empty()) throw std::runtime_error("no release under " + store.releases_dir().string());
    version = all.back().version;
  }
  host::RuntimeConfig config = host::load_runtime_config(store.runtime_config_path(version));
  host::LibraryLoader loader({}, os::real_os_sys_calls(), host::ChildProcessProbe::of_this_program());
  std::string result = host::run_release_task(store.release_dir(version), config, task, loader);
  if (invocation.json)
    std::cout << json{{"release", version}, {"module", task.module}, {"task", task.name}, {"result", result}}.dump(2)
              << "\n";
  else
    std::cout << result << "\n";
  return kOk;
}

// ---- check and the offline plan: no host, no release root -----------------------

std::shared_ptr<host::LibraryLoader> scratch_loader() {
  // A library that crashes or hangs while it loads costs only the probe child.
  return std::make_shared<host::LibraryLoader>(fs::path(), os::real_os_sys_calls(),
                                               host::ChildProcessProbe::of_this_program());
}

int run_check(const Invocation& invocation) {
  std::vector<fs::path> against(invocation.check_against.begin(), invocation.check_against.end());
  const host::ReleaseCheck check = host::check_release(invocation.check_release, *scratch_loader(), against);
  if (invocation.json)
    std::cout << check.to_json().dump(2) << "\n";
  else
    (check.ok() ? std::cout : std::cerr) << check.describe();
  return check.ok() ? kOk : kFailed;
}

// `plan --from A --to B` plans offline; `plan VSN` asks the running host.
bool plans_offline(const Invocation& invocation) {
  if (invocation.command != "plan" || (invocation.plan_from.empty() && invocation.plan_to.empty())) return false;
  if (invocation.plan_from.empty() || invocation.plan_to.empty())
    throw UsageError("an offline plan needs both --from RELEASE and --to RELEASE");
  if (!invocation.version.empty())
    throw UsageError("give VSN (planned by the running host) or --from and --to (offline), not both");
  return true;
}

int run_offline_plan(const Invocation& invocation) {
  const host::OfflinePlan plan = host::plan_offline(invocation.plan_from, invocation.plan_to, *scratch_loader());
  if (invocation.json) {
    std::cout << plan.to_json().dump(2) << "\n";
  } else if (plan.ok()) {
    std::cout << plan.describe();
  } else {
    std::cerr << plan.describe();
    for (const host::CheckProblem& problem : plan.problems)
      if (!problem.field.empty()) std::cerr << "  at " << problem.describe() << "\n";
  }
  return plan.ok() ? kOk : kFailed;
}

// trace start FILE [--max-bytes N] | trace stop, as the admin request.
json trace_request(const Invocation& invocation) {
  if (invocation.trace_action == "stop") {
    if (!invocation.file.empty() || invocation.trace_max_bytes != 0)
      throw UsageError("trace stop takes no FILE or --max-bytes (the host writes the file trace start named)");
    return {{"cmd", "trace-stop"}};
  }
  if (invocation.file.empty()) throw UsageError("trace start needs the FILE to write");
  json request = {{"cmd", "trace-start"}, {"file", fs::absolute(invocation.file).string()}};
  if (invocation.trace_max_bytes != 0) request["max_bytes"] = invocation.trace_max_bytes;
  return request;
}

}  // namespace

fs::path root_of(const Invocation& invocation) {
  // CLI11 has already put $HOTSWAP_ROOT in `root` when --root was not given.
  return invocation.root.empty() ? fs::current_path() : fs::absolute(invocation.root);
}

fs::path admin_socket_path(const fs::path& root) { return root / "run" / "admin.sock"; }

json admin_request_for(const Invocation& invocation) {
  const std::string& command = invocation.command;
  if (command == "status" || command == "reload" || command == "releases" || command == "stop")
    return {{"cmd", command}};
  if (command == "unpack") return {{"cmd", "unpack"}, {"file", fs::absolute(invocation.file).string()}};
  if (command == "log-level") return {{"cmd", "log-level"}, {"level", invocation.level}};
  if (command == "plan" && invocation.version.empty())
    throw UsageError("plan needs VSN (planned by the running host), or --from RELEASE --to RELEASE outside the "
                     "remote shell (planned offline)");
  if (command == "trace") return trace_request(invocation);
  // plan, upgrade, downgrade, make-permanent, remove
  json request = {{"cmd", command}, {"version", invocation.version}};
  if (!invocation.pre_task.empty()) request["pre_task"] = pre_task_request(invocation.pre_task);
  if (invocation.no_rehearse) request["rehearse"] = false;
  if (invocation.blue_green) request["blue_green"] = true;
  return request;
}

int send_admin_request(AdminClient& client, const Invocation& invocation, const json& request) {
  const std::string& command = invocation.command;
  bool streams_events = command == "upgrade" || command == "downgrade" || command == "reload" || command == "rehearse";
  json rehearsal;  // `rehearse --json` prints the rehearsal's report, failed or not
  json reply = client.request(request, [&](const json& event) {
    if (event.value("event", "") == "rehearsed" && event.contains("report")) rehearsal = event["report"];
    if (streams_events && !invocation.json) print_event(event);
  });
  if (command == "rehearse" && invocation.json && rehearsal.is_object())
    std::cout << rehearsal.dump(2) << "\n";
  else
    print_reply(command, reply, invocation.json);
  return exit_status_of_reply(reply);
}

int run_command(const Invocation& invocation) {
  const std::string& command = invocation.command;
  const fs::path root = root_of(invocation);
  if (command == "start") return run_host_in_foreground(root, invocation.log_level);
  if (command == "daemon") return run_host_as_daemon(root, invocation.log_level);
  if (command == "remote") return run_remote_shell(root);
  if (command == "task") return run_task(root, invocation);
  if (command == "check") return run_check(invocation);
  if (plans_offline(invocation)) return run_offline_plan(invocation);
  if (command == "stop") return run_stop(root);
  json request = admin_request_for(invocation);  // usage errors before trying to connect
  try {
    AdminClient client(admin_socket_path(root));
    return send_admin_request(client, invocation, request);
  } catch (const NotRunning&) {
    if (works_offline(command)) return run_offline(root, invocation);
    throw;
  }
}

}  // namespace hotswap::cli
