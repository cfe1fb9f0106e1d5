// Both framings of the network server (net/framing.hpp), as a connection uses
// them. The first byte picks the framing (bit 0: line / length_prefixed) and
// the property checked (bit 1):
//   0  the rest is a byte stream, cut with max_frame_bytes = 1 + the second byte.
//      Received whole or in reads of 1..16 bytes (sizes from the third byte),
//      it must give the same frames and the same error, if any.
//   1  the rest is messages separated by 0xff: each framed by append_frame and
//      cut again must come back unchanged.
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "net/framing.hpp"

namespace {

using hotswap::host::append_frame;
using hotswap::host::FrameCut;
using hotswap::host::FrameScanner;
using hotswap::host::Framing;

struct Received {
  std::vector<std::string> frames;
  bool error = false;
};

// What a connection does with each read: append, cut every complete frame, erase them.
template <typename ReadSize>
Received receive(Framing framing, size_t max_frame_bytes, std::string_view stream, ReadSize read_size) {
  FrameScanner scanner{framing, max_frame_bytes, 0};
  std::string input;
  Received received;
  for (size_t offset = 0, read = 0; offset < stream.size(); ++read) {
    const size_t n = std::min(read_size(read), stream.size() - offset);
    input.append(stream.substr(offset, n));
    offset += n;
    size_t start = 0;
    for (;;) {
      const FrameCut cut = scanner.next(input, start);
      if (cut.kind == FrameCut::Kind::Error) {
        HOTSWAP_FUZZ_CHECK(!cut.error.empty());
        received.error = true;
        return received;
      }
      if (cut.kind == FrameCut::Kind::Incomplete) break;
      HOTSWAP_FUZZ_CHECK(cut.next > start && cut.next <= input.size());
      HOTSWAP_FUZZ_CHECK(cut.frame.size() <= max_frame_bytes);
      if (framing == Framing::Line) {
        HOTSWAP_FUZZ_CHECK(cut.frame.find('\n') == std::string_view::npos);
        HOTSWAP_FUZZ_CHECK(cut.frame.find('\0') == std::string_view::npos);
      }
      received.frames.emplace_back(cut.frame);
      start = cut.next;
    }
    input.erase(0, start);
    scanner.consumed(start);
  }
  return received;
}

void whole_or_in_pieces(Framing framing, std::string_view rest) {
  if (rest.size() < 2) return;
  const size_t max_frame_bytes = 1 + uint8_t(rest[0]);
  const uint8_t pieces = uint8_t(rest[1]);
  const std::string_view stream = rest.substr(2);
  const Received whole = receive(framing, max_frame_bytes, stream, [&](size_t) { return stream.size(); });
  const Received in_pieces =
      receive(framing, max_frame_bytes, stream, [&](size_t read) { return 1 + (pieces * (read + 1)) % 16; });
  HOTSWAP_FUZZ_CHECK(whole.error == in_pieces.error);
  HOTSWAP_FUZZ_CHECK(whole.frames == in_pieces.frames);
}

void round_trip(Framing framing, std::string_view rest) {
  std::vector<std::string> sent;
  std::string stream;
  size_t longest = 1;
  for (size_t start = 0; start <= rest.size();) {
    const size_t end = std::min(rest.find('\xff', start), rest.size());
    const std::string message(rest.substr(start, end - start));
    start = end + 1;
    const std::string before = stream;
    const bool framed = append_frame(framing, message, stream);
    if (framing == Framing::Line) {
      HOTSWAP_FUZZ_CHECK(framed == (message.find('\n') == std::string::npos));
      // A text line cannot carry a NUL, and a final "\r" is taken for a "\r\n": not sent.
      const bool receivable = message.find('\0') == std::string::npos && (message.empty() || message.back() != '\r');
      if (!framed || !receivable) {
        stream = before;
        continue;
      }
    }
    HOTSWAP_FUZZ_CHECK(framed);
    sent.push_back(message);
    longest = std::max(longest, message.size());
  }
  const Received received = receive(framing, longest, stream, [&](size_t) { return stream.size(); });
  HOTSWAP_FUZZ_CHECK(!received.error);
  HOTSWAP_FUZZ_CHECK(received.frames == sent);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const Framing framing = (data[0] & 1) ? Framing::LengthPrefixed : Framing::Line;
  const std::string_view rest = hotswap::fuzz::as_text(data + 1, size - 1);
  if (data[0] & 2) {
    round_trip(framing, rest);
  } else {
    whole_or_in_pieces(framing, rest);
  }
  return 0;
}
