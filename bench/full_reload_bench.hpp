// full_reload (full_reload_bench.cpp): one JSON line per file system and probe setting.
#pragma once

namespace hotswap::bench {

void bench_full_reload(bool quick);

}  // namespace hotswap::bench
