// Process-wide malloc settings the host runs with.
#pragma once

#include <malloc.h>

namespace hotswap::host {

// glibc returns freed memory to the kernel and moves its mmap threshold as the
// heap changes, so an upgrade's state buffers (megabytes, allocated during the
// pause) could land on fresh pages and fault inside the pause. Fixed thresholds
// keep that memory warm in the process: a server trades some resident memory
// for a shorter, steadier pause. Call once at start-up, before other threads.
inline void tune_allocator_for_short_pauses() {
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace hotswap::host
