"""What process isolation costs on this machine, before bridgehost does anything.

Every analysis run is a fresh process forked from a zygote
(``docs/analysis.md``). Its CPU has a floor set by the kernel and the
(virtual) machine: the fork, the exit, and a page fault for every page the
run writes. This measures that floor, so the rates of ``bench/reanalyze.py``
can be read against it, and prints one JSON line:

- ``zero_fill_fault_us``: CPU per page fault on fresh anonymous memory
  (what a run pays for every 4 KiB it allocates: a fresh process has no
  freed memory to reuse);
- ``cow_fault_us``: CPU per copy-on-write fault (a page shared with the
  zygote, first written by the run: Python writes to every object it
  touches, its reference count);
- ``populate_us_per_page``: the same zero-fill done by one
  ``madvise(MADV_POPULATE_WRITE)`` call (madvise(2), Linux 5.14), per page:
  the difference to ``zero_fill_fault_us`` is the cost of taking the fault
  (a trap), not of the memory;
- ``zygote_anon_mb``, ``zygote_modules``: the private memory and the modules
  of a process shaped like the zygote (the runtime and ``--preload``
  imported, the collector frozen, the heap trimmed, as
  ``bridgehost_analysis.zygote`` does);
- ``fork_parent_ms``, ``fork_exit_child_ms``: CPU of ``fork()`` in that
  process, and of a child that calls ``_exit(0)`` at once (its exit unmaps
  its copy of the zygote);
- ``floor_runs_per_s``: CPUs x 1000 / (fork + exit ms): the most runs per
  second this machine could isolate if a run and its host cost nothing else;
- ``loadavg``: other work on the machine skews every figure.

    uv run python bench/isolation_floor.py [--forks 500] [--pages 20000] [--preload numpy]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import mmap
import os
import resource
import sys
import time

MADV_POPULATE_WRITE = 23  # linux/mman.h, Linux 5.14


def _cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _touch(m: mmap.mmap, pages: int) -> None:
    for offset in range(0, pages * mmap.PAGESIZE, mmap.PAGESIZE):
        m[offset] = 1


def fault_costs(pages: int) -> dict[str, float | None]:
    """CPU µs per zero-fill fault, per copy-on-write fault, and per page
    populated by madvise; the Python loop's own cost is taken off."""
    m = mmap.mmap(-1, pages * mmap.PAGESIZE)
    t = time.process_time()
    _touch(m, pages)
    first = time.process_time() - t
    t = time.process_time()
    _touch(m, pages)
    loop = time.process_time() - t  # the same loop, every page present
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        t = time.process_time()
        _touch(m, pages)
        os.write(write, str(time.process_time() - t).encode())
        os._exit(0)
    os.close(write)
    cow = float(os.read(read, 64))
    os.close(read)
    os.waitpid(pid, 0)
    m.close()

    populate: float | None = None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fresh = mmap.mmap(-1, pages * mmap.PAGESIZE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(fresh))
    t = time.process_time()
    if libc.madvise(address, pages * mmap.PAGESIZE, MADV_POPULATE_WRITE) == 0:
        populate = (time.process_time() - t) / pages * 1e6
    del address
    with_loop = loop / pages * 1e6
    return {
        "zero_fill_fault_us": round(first / pages * 1e6 - with_loop, 2),
        "cow_fault_us": round(cow / pages * 1e6 - with_loop, 2),
        "populate_us_per_page": round(populate, 2) if populate is not None else None,
    }


def anon_kb() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Anonymous:"))


def fork_costs(forks: int) -> tuple[float, float]:
    """CPU ms of ``fork()`` in this process, and of a child that exits at once."""
    parent0, children0 = _cpu_s(), _cpu_s(resource.RUSAGE_CHILDREN)
    for _ in range(forks):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    parent = (_cpu_s() - parent0) / forks * 1000
    child = (_cpu_s(resource.RUSAGE_CHILDREN) - children0) / forks * 1000
    return parent, child


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forks", type=int, default=500)
    parser.add_argument("--pages", type=int, default=20_000)
    parser.add_argument("--preload", action="append", default=None, help="modules the zygote imports (default: numpy)")
    args = parser.parse_args()
    figures: dict[str, object] = {"benchmark": "isolation_floor"}
    figures.update(fault_costs(args.pages))

    from bridgehost_analysis import zygote  # the zygote's runtime
    from bridgehost_analysis.proc import malloc_trim

    for name in args.preload if args.preload is not None else ["numpy"]:
        importlib.import_module(name)
    gc.disable()
    gc.collect()
    gc.freeze()
    malloc_trim()
    del zygote
    parent, child = fork_costs(args.forks)
    cpus = os.cpu_count() or 1
    figures.update(
        {
            "zygote_anon_mb": round(anon_kb() / 1024, 1),
            "zygote_modules": len(sys.modules),
            "fork_parent_ms": round(parent, 3),
            "fork_exit_child_ms": round(child, 3),
            "floor_runs_per_s": round(cpus * 1000 / (parent + child), 1),
            "cpus": cpus,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
