"""PostgreSQL memory settings computed from the memory the server is given.

The proportions are the usual starting points for a dedicated database server:
a quarter of memory for shared buffers, three quarters as the planner's cache estimate,
maintenance work memory a sixteenth (at most 2 GB), and per-operation work memory what
is left after shared buffers, spread over three operations per allowed connection.
"""

from __future__ import annotations

MB = 1024**2
GB = 1024**3


def _size(value: int) -> str:
    # Whole megabytes read best and PostgreSQL accepts them for every one of these.
    return "%dMB" % max(1, value // MB)


def tune(memory_bytes: int, max_connections: int = 100) -> dict[str, str]:
    shared_buffers = max(16 * MB, memory_bytes // 4)
    effective_cache_size = max(32 * MB, memory_bytes * 3 // 4)
    maintenance_work_mem = min(2 * GB, max(16 * MB, memory_bytes // 16))
    work_mem = max(
        4 * MB, (memory_bytes - shared_buffers) // (max(1, max_connections) * 3)
    )
    return {
        "shared_buffers": _size(shared_buffers),
        "effective_cache_size": _size(effective_cache_size),
        "maintenance_work_mem": _size(maintenance_work_mem),
        "work_mem": _size(work_mem),
    }
