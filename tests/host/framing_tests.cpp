// The two framings (net/framing.hpp); the fuzz target tests/fuzz/fuzz_framing.cpp
// checks the same properties on generated input.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "net/framing.hpp"

using hotswap::host::append_frame;
using hotswap::host::FrameCut;
using hotswap::host::FrameScanner;
using hotswap::host::Framing;

namespace {

struct Received {
  std::vector<std::string> frames;
  std::string error;
};

// As a connection does: each read appended, every complete frame cut, then erased.
Received receive(Framing framing, size_t max_frame_bytes, const std::vector<std::string>& reads) {
  FrameScanner scanner{framing, max_frame_bytes, 0};
  std::string input;
  Received received;
  for (const std::string& read : reads) {
    input += read;
    size_t start = 0;
    for (;;) {
      const FrameCut cut = scanner.next(input, start);
      if (cut.kind == FrameCut::Kind::Error) {
        received.error = cut.error;
        return received;
      }
      if (cut.kind == FrameCut::Kind::Incomplete) break;
      received.frames.emplace_back(cut.frame);
      start = cut.next;
    }
    input.erase(0, start);
    scanner.consumed(start);
  }
  return received;
}

using Frames = std::vector<std::string>;

}  // namespace

TEST_CASE("line framing cuts at LF, strips a CR before it, and refuses NUL bytes and long lines", "[framing]") {
  CHECK(receive(Framing::Line, 16, {"one\ntwo\r\nthr", "ee\n\npartial"}).frames == Frames{"one", "two", "three", ""});
  CHECK(receive(Framing::Line, 16, {std::string("a\0b\n", 4)}).error == "NUL byte in a text line");
  CHECK(receive(Framing::Line, 4, {"abcde\n"}).error == "line longer than max_frame_bytes");
  CHECK(receive(Framing::Line, 4, {"abc", "de"}).error == "line longer than max_frame_bytes");
  CHECK(receive(Framing::Line, 4, {"abcd\n"}).frames == Frames{"abcd"});
}

// A line of exactly max_frame_bytes whose "\r" arrived in one read and "\n" in
// the next was refused as too long: the same bytes in one read were accepted.
TEST_CASE("a line at the limit is accepted however its CR LF is split across reads", "[framing]") {
  CHECK(receive(Framing::Line, 4, {"abcd\r\n"}).frames == Frames{"abcd"});
  const Received split = receive(Framing::Line, 4, {"abcd\r", "\nef\n"});
  CHECK(split.error.empty());
  CHECK(split.frames == Frames{"abcd", "ef"});
  CHECK(receive(Framing::Line, 4, {"abcd\r", "x"}).error == "line longer than max_frame_bytes");
}

TEST_CASE("length-prefixed framing reads a 32-bit big-endian length and refuses one over the limit", "[framing]") {
  const std::string two_frames = std::string(
      "\0\0\0\x03"
      "abc"
      "\0\0\0\0",
      11);
  CHECK(receive(Framing::LengthPrefixed, 8, {two_frames}).frames == Frames{"abc", ""});
  CHECK(receive(Framing::LengthPrefixed, 8, {two_frames.substr(0, 2), two_frames.substr(2, 4), two_frames.substr(6)})
            .frames == Frames{"abc", ""});
  CHECK(receive(Framing::LengthPrefixed, 8, {std::string("\x01\0\0\0", 4)}).error ==
        "frame of 16777216 bytes over max_frame_bytes");
}

TEST_CASE("append_frame frames what can be framed and leaves the output alone otherwise", "[framing]") {
  std::string out = "x";
  CHECK(append_frame(Framing::Line, "hello", out));
  CHECK(out == "xhello\n");
  CHECK_FALSE(append_frame(Framing::Line, "two\nlines", out));
  CHECK(out == "xhello\n");
  std::string prefixed;
  CHECK(append_frame(Framing::LengthPrefixed, "a\nb", prefixed));
  CHECK(prefixed == std::string("\0\0\0\x03"
                                "a\nb",
                                7));
}
