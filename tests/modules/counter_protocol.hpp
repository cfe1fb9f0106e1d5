// Shared by the counter versions: a request may end in " #<tag>", which the
// reply repeats, so that a client can match replies to requests.
#pragma once

#include <string_view>
#include <utility>

inline std::pair<std::string_view, std::string_view> split_tag(std::string_view request) {
  size_t hash = request.rfind(" #");
  if (hash == std::string_view::npos) return {request, {}};
  return {request.substr(0, hash), request.substr(hash)};
}
