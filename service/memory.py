"""Keep freed memory mapped, so large responses do not pay fresh page faults every time.

glibc serves allocations over 128 KiB with mmap and returns them with munmap; the next response
of that size then faults in every page anew. Attention maps and per-token embeddings are MiBs,
and on a VM each fault is dear: building and serialising a 4.7 MB attention response took 11 ms
by default and 2.7 ms with these settings (same machine, same data). The cost: the process keeps
its peak heap instead of handing it back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("atento.memory")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
ONE_GIB = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; a no-op (False) where there is no glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        done = bool(libc.mallopt(M_MMAP_THRESHOLD, ONE_GIB)) and bool(libc.mallopt(M_TRIM_THRESHOLD, ONE_GIB))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    log.debug("glibc malloc keeps freed memory: %s", done)
    return done
