// The two framings of a listener (runtime.json "framing"), as pure functions
// over a connection's byte buffers: the NetworkServer reads and writes the
// socket, these cut and build the frames. Pure, so they can be fuzzed alone.
//
//   line             a frame is the bytes before "\n" (a trailing "\r" is
//                    stripped); a NUL byte in a line is a protocol error
//   length_prefixed  a 32-bit big-endian length, then that many bytes
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "release/runtime_config.hpp"

namespace hotswap::host {

struct FrameCut {
  enum class Kind {
    Frame,       // `frame` is complete; the next one starts at `next`
    Incomplete,  // more bytes are needed (none of them is over the limit yet)
    Error,       // the peer broke the protocol: `error` says how; close the connection
  };
  Kind kind = Kind::Incomplete;
  std::string_view frame;  // Frame: the payload, without the "\n" / "\r\n" or the length header; points into input
  std::size_t next = 0;    // Frame: the offset of the following frame in input
  std::string error;       // Error: for the log
};

// A connection's framing state between two reads.
struct FrameScanner {
  Framing framing = Framing::Line;
  std::size_t max_frame_bytes = 64 * 1024;  // a longer payload is an Error
  // Line: the offset in input up to which no "\n" was found, so that a line
  // arriving in many reads is scanned once. Adjust it with consumed() when the
  // buffer's front is erased.
  std::size_t scan_from = 0;

  // The frame starting at input[start] (start <= input.size()); input holds
  // every byte received and not yet consumed.
  FrameCut next(std::string_view input, std::size_t start);
  // The first `bytes` of the buffer were erased.
  void consumed(std::size_t bytes) { scan_from = scan_from >= bytes ? scan_from - bytes : 0; }
};

// Appends one outgoing frame holding `message` to `out`. False (and `out`
// unchanged) when the message cannot be framed: a "\n" in a line, or over
// 4 GiB for a length prefix.
bool append_frame(Framing framing, std::string_view message, std::string& out);

}  // namespace hotswap::host
