// The wire protocol of the `handover` test module (handover_module.cpp),
// shared with the traffic harness that checks it (tests/handover/e2e/).
//
//   "<seq>"  (decimal, a connection's numbered request)
//     -> "<seq> <conn-id> <count> <tag>"  count: numbered requests this
//        connection has made so far, this one included; tag: "v1" or "v2"
//   "stats"  -> "stats version=V conns=C total=T closed_conns=K closed=M
//                checksum=X fires=F ticks=N label=L"
//     conns/checksum: the connections that made a numbered request and are
//     still open; total: numbered requests ever; closed_conns/closed: the
//     connections that closed and the requests they had made; fires: how
//     often the module's repeating timer fired; label: 2.0.0's migration
//     label ("-" in 1.0.0).
#pragma once

#include <cstdint>

namespace hotswap::test::handover {

// One connection's share of the `checksum` in a stats reply (summed, mod 2^64):
// it changes when a count moves to another id, not only when a sum changes.
inline uint64_t connection_checksum(uint64_t conn_id, uint64_t count) {
  uint64_t x = conn_id * 0x9E3779B97F4A7C15ull ^ (count + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 29;
  return x * 0xBF58476D1CE4E5B9ull;
}

}  // namespace hotswap::test::handover
