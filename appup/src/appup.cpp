#include <hotswap/appup/appup.hpp>

#include <hotswap/appup/error.hpp>

#include <hotswap/appup/json_reader.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>

namespace hotswap::appup {

using nlohmann::json;

namespace {

constexpr std::array kAllOps = {Op::LoadModule,    Op::Update, Op::AddModule, Op::DeleteModule,
                                Op::RestartModule, Op::Apply,  Op::BlueGreen};

// The ops that replace the code of the appup's own module; an entry may hold one.
bool changes_code(Op op) { return op == Op::LoadModule || op == Op::Update || op == Op::RestartModule; }

// Fields an op accepts besides the ones every op accepts ("op", "timeout_ms", "depends_on").
std::vector<std::string> own_fields(Op op) {
  switch (op) {
    case Op::Update: return {"extra"};
    case Op::Apply: return {"task", "args", "module"};
    case Op::AddModule:
    case Op::DeleteModule: return {"module"};
    case Op::BlueGreen: return {"reason"};
    case Op::LoadModule:
    case Op::RestartModule: return {};
  }
  return {};
}

std::string op_names() {
  std::string names;
  for (Op op : kAllOps) names += (names.empty() ? "" : ", ") + std::string(to_string(op));
  return names;
}

Op parse_op(const JsonReader& doc, const json& instruction, const std::string& field) {
  const std::string name = doc.expect_string(doc.require(instruction, field, "op"), key_path(field, "op"));
  for (Op op : kAllOps) {
    if (name == to_string(op)) return op;
  }
  doc.fail(key_path(field, "op"), "unknown op '" + name + "' (expected one of: " + op_names() + ")");
}

void check_fields(const JsonReader& doc, const json& instruction, const std::string& field, Op op,
                  const std::string& own_module) {
  std::vector<std::string> allowed = {"op", "timeout_ms", "depends_on"};
  const std::vector<std::string> extra_fields = own_fields(op);
  allowed.insert(allowed.end(), extra_fields.begin(), extra_fields.end());
  for (auto it = instruction.begin(); it != instruction.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) != allowed.end()) continue;
    if (it.key() == "module" && changes_code(op)) {
      doc.fail(key_path(field, "module"), std::string(to_string(op)) + " always acts on the appup's own module (" +
                                            own_module + "); 'module' is not allowed here");
    }
    std::string list;
    for (const auto& name : allowed) list += (list.empty() ? "" : ", ") + name;
    doc.fail(key_path(field, it.key()), "not a field of " + std::string(to_string(op)) + " (allowed: " + list + ")");
  }
}

std::chrono::milliseconds parse_timeout(const JsonReader& doc, const json& value, const std::string& field) {
  // Written numbers arrive as unsigned, numbers built in code as signed; both are fine when positive.
  const bool positive =
      value.is_number_unsigned()
          ? value.get<uint64_t>() > 0 && value.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max())
          : value.is_number_integer() && value.get<int64_t>() > 0;
  if (!positive) doc.fail(field, "expected a positive integer number of milliseconds, got " + value.dump());
  return std::chrono::milliseconds(value.get<int64_t>());
}

Instruction parse_instruction(const JsonReader& doc, const json& value, const std::string& field,
                              const std::string& own_module) {
  doc.expect_object(value, field);
  Instruction instruction;
  instruction.op = parse_op(doc, value, field);
  check_fields(doc, value, field, instruction.op, own_module);
  instruction.field = field;
  instruction.module = own_module;
  // check_fields let through only the fields this op accepts, so each one found here belongs.
  if (const json* module = find_member(value, "module")) {
    instruction.module = doc.expect_name(*module, key_path(field, "module"));
  }
  if (const json* extra = find_member(value, "extra")) instruction.extra = *extra;
  if (const json* args = find_member(value, "args")) instruction.args = *args;
  if (const json* reason = find_member(value, "reason")) {
    instruction.reason = doc.expect_string(*reason, key_path(field, "reason"));
  }
  if (const json* timeout = find_member(value, "timeout_ms")) {
    instruction.timeout = parse_timeout(doc, *timeout, key_path(field, "timeout_ms"));
  }
  if (const json* depends_on = find_member(value, "depends_on")) {
    instruction.depends_on = doc.expect_names(*depends_on, key_path(field, "depends_on"));
  }
  if (instruction.op == Op::Apply) {
    instruction.task = doc.expect_name(doc.require(value, field, "task"), key_path(field, "task"));
  }
  return instruction;
}

VersionPattern parse_pattern(const JsonReader& doc, const json& value, const std::string& field) {
  if (value.is_string()) return VersionPattern::exact(doc.expect_version(value, field));
  if (!value.is_object()) {
    doc.fail(field, std::string("expected a version string or {\"regex\": \"...\"}, got ") + describe_json(value));
  }
  doc.expect_object(value, field, {"regex"});
  const std::string regex_field = key_path(field, "regex");
  const std::string expression = doc.expect_string(doc.require(value, field, "regex"), regex_field);
  try {
    return VersionPattern::regex(expression);
  } catch (const PatternError& e) {
    // An expression refused for its length is not repeated: it may be megabytes.
    const std::string quoted = expression.size() <= VersionPattern::kMaxExpressionLength ? " '" + expression + "'" : "";
    doc.fail(regex_field, "invalid regular expression" + quoted + ": " + e.what());
  }
}

// Two code changes in one entry would load the module twice in a single
// transaction; the planner and the executor assume at most one.
void check_single_code_change(const JsonReader& doc, const AppupEntry& entry) {
  const Instruction* first = nullptr;
  for (const Instruction& instruction : entry.instructions) {
    if (!changes_code(instruction.op)) continue;
    if (first) {
      doc.fail(instruction.field, std::string("second code-change instruction (") + to_string(instruction.op) +
                                      ") in one entry; " + first->field + " (" + to_string(first->op) +
                                      ") already changes the code");
    }
    first = &instruction;
  }
}

AppupEntry parse_entry(const JsonReader& doc, const json& value, const std::string& field, const char* pattern_key,
                       const std::string& own_module) {
  doc.expect_object(value, field, {pattern_key, "instructions"});
  AppupEntry entry;
  entry.field = field;
  entry.versions = parse_pattern(doc, doc.require(value, field, pattern_key), key_path(field, pattern_key));
  const std::string list_field = key_path(field, "instructions");
  const json& list = doc.expect_array(doc.require(value, field, "instructions"), list_field);
  for (size_t i = 0; i < list.size(); ++i) {
    entry.instructions.push_back(parse_instruction(doc, list[i], index_path(list_field, i), own_module));
  }
  check_single_code_change(doc, entry);
  return entry;
}

std::vector<AppupEntry> parse_entries(const JsonReader& doc, const json& document, const char* key,
                                      const char* pattern_key, const std::string& own_module) {
  std::vector<AppupEntry> entries;
  const json* value = find_member(document, key);
  if (!value) return entries;
  const json& list = doc.expect_array(*value, key);
  for (size_t i = 0; i < list.size(); ++i) {
    entries.push_back(parse_entry(doc, list[i], index_path(key, i), pattern_key, own_module));
  }
  return entries;
}

const AppupEntry* first_match(const std::vector<AppupEntry>& entries, std::string_view version) {
  for (const AppupEntry& entry : entries) {
    if (entry.versions.matches(version)) return &entry;
  }
  return nullptr;
}

}  // namespace

const char* to_string(Op op) {
  switch (op) {
    case Op::LoadModule: return "load_module";
    case Op::Update: return "update";
    case Op::AddModule: return "add_module";
    case Op::DeleteModule: return "delete_module";
    case Op::RestartModule: return "restart_module";
    case Op::Apply: return "apply";
    case Op::BlueGreen: return "blue_green";
  }
  return "unknown";
}

const AppupEntry* Appup::find_up(std::string_view from_version) const { return first_match(up, from_version); }

const AppupEntry* Appup::find_down(std::string_view to_version) const { return first_match(down, to_version); }

Appup parse_appup(const nlohmann::json& document, const std::string& source) {
  const JsonReader doc(source);
  doc.expect_object(document, "", {"module", "version", "up", "down"});
  Appup appup;
  appup.source = source;
  appup.module = doc.expect_name(doc.require(document, "", "module"), "module");
  appup.version = doc.expect_version(doc.require(document, "", "version"), "version");
  appup.up = parse_entries(doc, document, "up", "from", appup.module);
  appup.down = parse_entries(doc, document, "down", "to", appup.module);
  return appup;
}

}  // namespace hotswap::appup
