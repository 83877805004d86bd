"""Benchmark of ``desired simulate``: wall time and peak memory.

Usage::

    python benchmarks/bench_simulate.py                 # default mini night (3 arcs, 12 flats, 2 science), nproc 2
    python benchmarks/bench_simulate.py --full          # also one full science exposure (30 cameras)
    python benchmarks/bench_simulate.py --nproc 1

Prints one line per case: wall time, CPU seconds of the simulation and its workers,
peak RSS of the main process and of the largest worker, and the size written.  Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def _dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def run_case(label, extra, nproc, data_dir):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "desired", "--log-level", "WARNING", "simulate", "--night", "20261124",
               "--raw-dir", f"{tmp}/raw", "--calib-dir", f"{tmp}/calib", "--truth-dir", f"{tmp}/truth",
               "--seed", "1", "--nproc", str(nproc)] + extra
        if data_dir:
            cmd += ["--data-dir", data_dir]
        else:
            cmd += ["--parametric"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        size = _dir_size(tmp)
    print(f"{label}: wall {wall:.1f} s, cpu {cpu:.1f} s, nproc {nproc}, peak RSS of the largest process "
          f"{max(after.ru_maxrss, before.ru_maxrss) / 1024:.0f} MiB, written {size / 2**20:.0f} MiB", flush=True)
    return wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="also time one full science exposure (30 cameras)")
    parser.add_argument("--data-dir", default=None, help="sky/extinction tables (default: parametric models)")
    args = parser.parse_args()
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    run_case("default mini night (3 arcs, 12 flats = DESI's sequence, 2 science; 3 cameras x 50 fibers)",
             ["--preset", "mini", "--narc", "3", "--nflat", "12", "--nscience", "2"], args.nproc, args.data_dir)
    if args.full:
        run_case("full science exposure (30 cameras x 500 fibers, no truth pixel images)",
                 ["--preset", "full", "--narc", "0", "--nflat", "0", "--nscience", "1"], args.nproc, args.data_dir)


if __name__ == "__main__":
    main()
