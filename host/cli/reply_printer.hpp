// How the `hotswap` command shows the host's replies and upgrade events to an
// operator (or as JSON with --json). The reply shapes are the admin protocol's
// (host/README.md, "Admin protocol").
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace hotswap::cli {

// One event line of a running upgrade ("check", "step", "committed", ...), on stdout.
void print_event(const nlohmann::json& event);

// A live rehearsal's report (RehearsalReport::to_json): outcome, steps, state
// sizes, the cost to the live process. Each line starts with `indent`.
void print_rehearsal(const nlohmann::json& report, const std::string& indent);

// The final reply to `command`: its result on stdout, or its error on stderr.
// With `as_json`, the result (or the whole error reply) as JSON on stdout.
void print_reply(const std::string& command, const nlohmann::json& reply, bool as_json);

}  // namespace hotswap::cli
