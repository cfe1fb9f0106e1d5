// counter 2.0.0 — state schema 2 (a real layout change from schema 1):
//   str label, u64 n, n x (u64 conn, i64 count, u64 messages), i64 total, u64 ticks
// Upgrade from schema 1: label from extra.label (default "default"), messages 0.
// Downgrade to schema 1: drops label and messages.
// Test hooks in `extra`: {"sleep_ms": N} makes the migration slow; {"fail": "throw"} makes it throw;
// {"announce": CONN} sends "v2 migrated" to CONN from inside the migration.
#include <chrono>
#include <fstream>
#include <hotswap/module.hpp>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "counter_protocol.hpp"

namespace {

struct Entry {
  int64_t count = 0;
  uint64_t messages = 0;
};

void apply_test_hooks(const nlohmann::json& extra) {
  if (!extra.is_object()) return;
  if (extra.contains("sleep_ms")) std::this_thread::sleep_for(std::chrono::milliseconds(extra["sleep_ms"].get<int>()));
  if (extra.value("fail", "") == "throw") throw std::runtime_error("migration failed on purpose");
}

}  // namespace

class Counter : public hotswap::Module<Counter> {
 public:
  static constexpr uint32_t kStateSchema = 2;
  using Module::Module;

  void on_message(hotswap::ConnId conn, std::string_view request) {
    auto [msg, tag] = split_tag(request);
    Entry& e = per_conn_[conn];
    ++e.messages;
    if (msg.rfind("add ", 0) == 0) {
      int64_t n = std::stoll(std::string(msg.substr(4)));
      total_ += n;
      e.count += n;
    } else if (msg != "get") {
      throw std::runtime_error("unknown request '" + std::string(msg) + "'");
    }
    host().send(conn, "v2 total=" + std::to_string(total_) + std::string(tag));
  }
  void on_tick(uint64_t) { ++ticks_; }
  void on_timer(hotswap::TimerId, uint64_t conn) { host().send(conn, "v2 timer fired"); }

  void export_state(hotswap::StateWriter& out) const {
    out.str(label_);
    out.u64(per_conn_.size());
    for (const auto& [conn, e] : per_conn_) {
      out.u64(conn);
      out.i64(e.count);
      out.u64(e.messages);
    }
    out.i64(total_);
    out.u64(ticks_);
  }
  void import_state(hotswap::StateReader& in) {
    label_ = in.str();
    uint64_t n = in.u64();
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t conn = in.u64();
      Entry& e = per_conn_[conn];
      e.count = in.i64();
      e.messages = in.u64();
    }
    total_ = in.i64();
    ticks_ = in.u64();
    in.expect_end();
  }
  void migrate_up(const hotswap::MigrationFrom& from, hotswap::StateReader& in) {
    nlohmann::json extra = nlohmann::json::parse(from.extra_json);
    // A send during migration: the host must hold it until the upgrade commits.
    if (extra.is_object() && extra.contains("announce"))
      host().send(extra["announce"].get<hotswap::ConnId>(), "v2 migrated");
    apply_test_hooks(extra);
    if (from.schema == kStateSchema) return import_state(in);
    if (from.schema != 1) throw std::runtime_error("cannot migrate from schema " + std::to_string(from.schema));
    label_ = extra.is_object() ? extra.value("label", "default") : "default";
    total_ = static_cast<int64_t>(in.u64());
    ticks_ = in.u64();
    uint32_t n = in.u32();
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t conn = in.u64();
      per_conn_[conn].count = static_cast<int64_t>(in.u64());
    }
    in.expect_end();
  }
  void migrate_down(const hotswap::MigrationTo& to, hotswap::StateWriter& out) const {
    apply_test_hooks(nlohmann::json::parse(to.extra_json));
    if (to.schema == kStateSchema) return export_state(out);
    if (to.schema != 1) throw std::runtime_error("cannot migrate down to schema " + std::to_string(to.schema));
    out.u64(static_cast<uint64_t>(total_));
    out.u64(ticks_);
    out.u32(static_cast<uint32_t>(per_conn_.size()));
    for (const auto& [conn, e] : per_conn_) {
      out.u64(conn);
      out.u64(static_cast<uint64_t>(e.count));
    }
  }
  std::string run_task(std::string_view name, std::string_view args) {
    if (name == "label") return "\"" + label_ + "\"";
    if (name == "sleep") {  // a slow release task, for tests of concurrent upgrades
      nlohmann::json a = nlohmann::json::parse(args);
      std::this_thread::sleep_for(std::chrono::milliseconds(a.value("ms", 100)));
      return "\"slept\"";
    }
    if (name == "wait_for_gate") {  // blocks until the test opens the FIFO args.fifo for writing and closes it
      nlohmann::json a = nlohmann::json::parse(args);
      std::ifstream gate(a.at("fifo").get<std::string>());  // opening a FIFO waits for its writer
      std::string drained((std::istreambuf_iterator<char>(gate)), std::istreambuf_iterator<char>());
      return "\"gate opened\"";
    }
    throw hotswap::UnsupportedTask(name);
  }

 private:
  std::string label_ = "default";
  std::map<hotswap::ConnId, Entry> per_conn_;
  int64_t total_ = 0;
  uint64_t ticks_ = 0;
};

HOTSWAP_MODULE(Counter)
