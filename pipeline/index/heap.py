"""How an index holder's process uses glibc's heap, so that what it frees goes back to the system.

An index holder allocates a few large buffers for a while — a snapshot's bytes, a build's
training vectors, the lists of an index being refitted — among millions of small ones that
stay. glibc serves allocations above a threshold with mmap, returned on free, but raises that
threshold to the size of each large block freed (up to 32 MiB), after which such buffers come
from the heap and the long-lived small blocks around them keep the freed pages resident.
Fixing the threshold keeps large buffers out of the heap; `give_back` returns the free pages
inside the heap after the index's lists were replaced.
"""

import ctypes
import ctypes.util

_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
# mallopt's parameter number for the mmap threshold (malloc.h).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def keep_large_buffers_out_of_the_heap() -> None:
    """Process-wide and idempotent: the holder's process is the holder's alone."""
    _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def give_back() -> None:
    _LIBC.malloc_trim(0)
