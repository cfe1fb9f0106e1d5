#include "net/framing.hpp"

#include <cstdint>
#include <limits>

namespace hotswap::host {

namespace {

constexpr std::size_t kLengthBytes = 4;

FrameCut error(std::string message) {
  FrameCut cut;
  cut.kind = FrameCut::Kind::Error;
  cut.error = std::move(message);
  return cut;
}

FrameCut frame(std::string_view payload, std::size_t next) {
  FrameCut cut;
  cut.kind = FrameCut::Kind::Frame;
  cut.frame = payload;
  cut.next = next;
  return cut;
}

}  // namespace

FrameCut FrameScanner::next(std::string_view input, std::size_t start) {
  if (framing == Framing::Line) {
    if (scan_from < start) scan_from = start;
    const std::size_t newline = input.find('\n', scan_from);
    if (newline == std::string_view::npos) {
      scan_from = input.size();
      // A line of exactly max_frame_bytes may wait for the "\n" after its "\r".
      const std::size_t pending = input.size() - start;
      const bool carriage_return_last = pending > 0 && input.back() == '\r';
      if (pending > max_frame_bytes + (carriage_return_last ? 1 : 0)) return error("line longer than max_frame_bytes");
      return {};
    }
    std::size_t end = newline;
    if (end > start && input[end - 1] == '\r') --end;
    if (end - start > max_frame_bytes) return error("line longer than max_frame_bytes");
    const std::string_view line = input.substr(start, end - start);
    if (line.find('\0') != std::string_view::npos) return error("NUL byte in a text line");
    scan_from = newline + 1;
    return frame(line, newline + 1);
  }
  if (input.size() - start < kLengthBytes) return {};
  const auto* p = reinterpret_cast<const unsigned char*>(input.data() + start);
  const std::size_t length =
      (std::size_t(p[0]) << 24) | (std::size_t(p[1]) << 16) | (std::size_t(p[2]) << 8) | std::size_t(p[3]);
  if (length > max_frame_bytes) return error("frame of " + std::to_string(length) + " bytes over max_frame_bytes");
  if (input.size() - start - kLengthBytes < length) return {};
  return frame(input.substr(start + kLengthBytes, length), start + kLengthBytes + length);
}

bool append_frame(Framing framing, std::string_view message, std::string& out) {
  if (framing == Framing::Line) {
    if (message.find('\n') != std::string_view::npos) return false;
    out.reserve(out.size() + message.size() + 1);
    out.append(message);
    out.push_back('\n');
    return true;
  }
  if (message.size() > std::numeric_limits<uint32_t>::max()) return false;
  const auto n = static_cast<uint32_t>(message.size());
  const char header[kLengthBytes] = {char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
  out.reserve(out.size() + message.size() + kLengthBytes);
  out.append(header, kLengthBytes);
  out.append(message);
  return true;
}

}  // namespace hotswap::host
