#include "admin/admin_commands.hpp"

#include <spdlog/spdlog.h>

#include "net/event_trace.hpp"
#include "runtime.hpp"

namespace hotswap::host {
namespace {

// The request's string argument `key`; throws a bad-request error naming it.
std::string string_arg(const nlohmann::json& request, const char* key) {
  auto it = request.find(key);
  if (it == request.end() || !it->is_string() || it->get<std::string>().empty())
    throw std::invalid_argument(std::string("missing string argument \"") + key + "\"");
  return it->get<std::string>();
}

std::optional<ReleaseTask> pre_task_arg(const nlohmann::json& request) {
  auto it = request.find("pre_task");
  if (it == request.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) throw std::invalid_argument("\"pre_task\" must be an object {module, task, args}");
  ReleaseTask task;
  task.module = string_arg(*it, "module");
  task.name = string_arg(*it, "task");
  task.args = it->value("args", nlohmann::json(nullptr));
  return task;
}

void reply_with_report(const AdminResponder& respond, const UpgradeReport& report) {
  if (report.committed()) return respond.ok(report.to_json());
  // A refusal by the live rehearsal has its own code (and CLI exit status).
  respond.error(report.summary(), report.rehearsal_failed ? "rehearsal_failed" : to_string(report.outcome));
}

// The request's optional boolean `key` (default `otherwise`).
bool bool_arg(const nlohmann::json& request, const char* key, bool otherwise) {
  auto it = request.find(key);
  if (it == request.end() || it->is_null()) return otherwise;
  if (!it->is_boolean()) throw std::invalid_argument(std::string("\"") + key + "\" must be true or false");
  return it->get<bool>();
}

// `rehearse VERSION`: the rehearsal's report, or the reason none ran.
void start_rehearsal(Runtime& runtime, const nlohmann::json& request, const AdminResponder& respond) {
  runtime.rehearse(
      string_arg(request, "version"), [respond](const nlohmann::json& event) { respond.event(event); },
      [respond](const UpgradeReport& report) {
        if (report.rehearsal.is_null()) return respond.error(report.summary(), to_string(report.outcome));
        if (report.rehearsal.value("outcome", "") == "passed") return respond.ok(report.rehearsal);
        respond.error(report.rehearsal.value("outcome", "failed") + std::string(": ") + report.error,
                      "rehearsal_failed");
      });
}

void start_upgrade(Runtime& runtime, const nlohmann::json& request, const AdminResponder& respond,
                   std::optional<appup::Direction> direction) {
  UpgradeRequest upgrade;
  upgrade.version = string_arg(request, "version");
  upgrade.pre_task = pre_task_arg(request);
  upgrade.expected_direction = direction;
  upgrade.rehearse = bool_arg(request, "rehearse", true);  // false: --no-rehearse
  upgrade.blue_green = bool_arg(request, "blue_green", false);  // true: --blue-green
  runtime.upgrade(
      upgrade, [respond](const nlohmann::json& event) { respond.event(event); },
      [respond](const UpgradeReport& report) { reply_with_report(respond, report); });
}

}  // namespace

AdminHandler make_admin_handler(Runtime& runtime) {
  // trace start|stop: the recorder lives as long as the handler (the admin
  // server's), and writes a recording still running when that ends.
  auto traces = std::make_shared<TraceRecorder>(
      runtime.server(), [&runtime](std::function<void()> work, std::function<void()> then) {
        return runtime.coordinator().run_on_worker(std::move(work), std::move(then));
      });
  return [&runtime, traces](const nlohmann::json& request, const AdminResponder& respond) {
    const std::string cmd = request["cmd"];
    try {
      if (cmd == "status") return respond.ok(runtime.status());
      if (cmd == "releases")
        return runtime.list_releases([respond](const nlohmann::json& releases, const std::string& error) {
          if (error.empty()) return respond.ok(releases);
          respond.error(error);
        });
      if (cmd == "plan") {
        return runtime.plan(string_arg(request, "version"),
                            [respond](const std::optional<appup::Plan>& plan, const std::string& error) {
                              if (!plan) return respond.error(error);
                              respond.ok({{"plan", plan->to_json()}, {"text", plan->describe()}});
                            });
      }
      if (cmd == "upgrade") return start_upgrade(runtime, request, respond, appup::Direction::Upgrade);
      if (cmd == "downgrade") return start_upgrade(runtime, request, respond, appup::Direction::Downgrade);
      if (cmd == "rehearse") return start_rehearsal(runtime, request, respond);
      if (cmd == "reload") {
        // Logged as a SIGHUP reload is: the operator's log shows every reload, whoever asked.
        spdlog::info("admin: reloading");
        return runtime.reload([respond](const nlohmann::json& event) { respond.event(event); },
                              [respond](const Runtime::ReloadResult& reload) {
                                if (!reload.error.empty())
                                  spdlog::error("reload failed: {}", reload.error);
                                else
                                  spdlog::info("reload: {}", reload.result.value("action", "?"));
                                if (reload.error.empty()) return respond.ok(reload.result);
                                respond.error(reload.error, reload.busy ? "busy" : "failed");
                              });
      }
      if (cmd == "unpack")
        return runtime.unpack(string_arg(request, "file"),
                              [respond](const std::string& version, const std::string& error) {
                                if (error.empty()) return respond.ok({{"version", version}});
                                respond.error(error);
                              });
      // Release-store writes fsync: they run on the worker and answer from the loop.
      if (cmd == "make-permanent") {
        std::string version = string_arg(request, "version");
        return runtime.make_permanent(version, [respond, version](const std::string& error) {
          if (error.empty()) return respond.ok({{"permanent", version}});
          respond.error(error);
        });
      }
      if (cmd == "remove") {
        std::string version = string_arg(request, "version");
        return runtime.remove_release(version, [respond, version](const std::string& error) {
          if (error.empty()) return respond.ok({{"removed", version}});
          respond.error(error);
        });
      }
      if (cmd == "log-level") {
        std::string level = string_arg(request, "level");
        runtime.set_log_level(level);
        return respond.ok({{"level", level}});
      }
      if (cmd == "stop") {
        respond.ok({{"stopping", true}});
        boost::asio::post(runtime.io(), [&runtime] { runtime.stop(); });
        return;
      }
      // --- trace recording (net/event_trace.hpp) ---
      if (cmd == "trace-start" || cmd == "trace-stop") {
        auto reply = [respond](const nlohmann::json& result, const std::string& error) {
          if (error.empty()) return respond.ok(result);
          respond.error(error);
        };
        if (cmd == "trace-stop") return traces->stop(reply);
        uint64_t max_bytes = kTraceDefaultMaxBytes;
        if (auto it = request.find("max_bytes"); it != request.end()) {
          if (!it->is_number_unsigned()) throw std::invalid_argument("\"max_bytes\" must be a positive integer");
          max_bytes = it->get<uint64_t>();
        }
        return traces->start(string_arg(request, "file"), max_bytes, reply);
      }
      respond.error("unknown command '" + cmd + "'", "bad_request");
    } catch (const std::invalid_argument& e) {
      respond.error(e.what(), "bad_request");
    }
  };
}

}  // namespace hotswap::host
