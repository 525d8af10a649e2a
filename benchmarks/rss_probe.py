"""The benchmarks' memory probe, in a process of its own: `python -m benchmarks.rss_probe ROOT_PID ...`.

Why a process: the samplers used to be threads of the benchmark, and the benchmark *is* the loop's
process. Scanning all of /proc every 50 ms in Python held the loop's GIL for a large share of the
run (a py-spy profile of a 300k loop on a busy machine put ~40 s of samples in the sampler), so every
stage was measured slower than it is. Here the scan holds no lock of the loop's, and it reads the
one-line `/proc/PID/stat` instead of parsing `status` for every process.

Until its stdin closes it samples, every `--interval` seconds:
- the summed resident set of ROOT_PID and its descendants, except the `--exclude` pids (the
  benchmark's stand-ins) and their descendants, and except a temporary Prefect server, whose
  own figure is kept apart (a centre runs one server for every run, not one per loop);
- the peak resident set (VmHWM) of each child of ROOT_PID whose command line holds `--marker`.

Then it prints one JSON line: {"tree_kib", "server_kib", "marked_hwm_kib", "marked"} (marked: how many
such children it saw).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat(pid: str) -> tuple[int, int] | None:
    """(ppid, resident KiB) from /proc/PID/stat, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            line = f.read()
    except OSError:
        return None
    rest = line[line.rfind(b")") + 2 :].split()  # the command name may hold spaces and parentheses
    return int(rest[1]), int(rest[21]) * PAGE_KIB


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=int)
    ap.add_argument("--exclude", type=int, nargs="*", default=[])
    ap.add_argument("--marker", default="")
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()
    exclude = set(args.exclude) | {os.getpid()}
    marker = args.marker.encode()
    tree_peak = server_peak = 0
    hwm: dict[int, int] = {}
    while True:
        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and (st := _stat(entry.name)) is not None:
                pid = int(entry.name)
                parents[pid], rss[pid] = st
        tree, server, frontier = {args.root}, set(), {args.root}
        while frontier:
            frontier = {p for p, pp in parents.items() if pp in frontier and p not in exclude}
            cmdlines = {p: _cmdline(p) for p in frontier}  # read each time: a fresh child may not have exec'd yet
            for p in frontier:
                if b"prefect" in cmdlines[p] or parents.get(p) in server:
                    server.add(p)
                if marker and parents[p] == args.root and marker in cmdlines[p]:
                    hwm[p] = max(hwm.get(p, 0), _hwm_kib(p))
            tree |= frontier
        tree_peak = max(tree_peak, sum(rss.get(p, 0) for p in tree - server))
        server_peak = max(server_peak, sum(rss.get(p, 0) for p in server))
        ready, _, _ = select.select([sys.stdin], [], [], args.interval)
        if ready and not sys.stdin.buffer.read1(4096):  # the benchmark closed our stdin: report
            break
    marked = {"marked_hwm_kib": max(hwm.values(), default=0), "marked": len(hwm)}
    print(json.dumps({"tree_kib": tree_peak, "server_kib": server_peak, **marked}))


if __name__ == "__main__":
    main()
