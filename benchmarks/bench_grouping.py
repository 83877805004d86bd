"""SLURM job grouping: sbatch submissions and wall time of one night, per grouping.

Simulates one night once (default: the ``mini`` preset with 2 arcs, 1 flat and 1
science exposure, cameras b0/r0/z0), then processes it from that raw tree with
``snakemake --profile profiles/slurm`` once per grouping setting (config
``group.chain``, rules/groups.smk), each in a fresh
production directory, and prints per setting: the number of sbatch submissions
(distinct SLURM job ids the executor reported), the wall time of the whole run,
and whether every frame equals the frames of the first setting (arrays; grouping
must not change the products).  Needs a running SLURM cluster
(.ci/start_slurm.sh) and mpi4py.

Usage::

    python benchmarks/bench_grouping.py [--chains none extract all] [--outdir DIR]

One line per setting: ``grouping CHAIN: N sbatch, S s, F frames, identical to ...``.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from workflow_runs import environment, new_production, simulate, snakemake_command


def run_production(workdir, raw, calib, chain, nodes):
    """Run the night under the SLURM profile; return (wall s, number of sbatch submissions)."""
    new_production(workdir, raw, calib, f"group:\n  chain: {chain}\nextract:\n  nodes: {nodes}\n  tasks: 2\n")
    start = time.perf_counter()
    run = subprocess.run(snakemake_command(workdir, "slurm"), cwd=workdir, env=environment(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    (workdir / "snakemake.out").write_text(run.stdout)
    if run.returncode != 0:
        raise RuntimeError(f"snakemake failed ({chain}), see {workdir / 'snakemake.out'}:\n"
                           + run.stdout[-3000:])
    jobs = set(re.findall(r"has been submitted with SLURM jobid (\d+)", run.stdout))
    return wall, len(jobs)


def frames(workdir):
    """{relative path: (flux, ivar, mask)} of every frame of a production."""
    import fitsio
    out = {}
    for path in sorted((workdir / "prod").rglob("frame-*.fits")):
        out[str(path.relative_to(workdir))] = tuple(fitsio.read(path, ext) for ext in ("FLUX", "IVAR", "MASK"))
    return out


def same_frames(a, b):
    """True when both productions hold the same frames with identical arrays."""
    return a.keys() == b.keys() and all(np.array_equal(x, y) for k in a for x, y in zip(a[k], b[k]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini", choices=["tiny", "mini", "petal"])
    parser.add_argument("--narc", type=int, default=2)
    parser.add_argument("--nflat", type=int, default=1)
    parser.add_argument("--nscience", type=int, default=1)
    parser.add_argument("--chains", nargs="+", default=["none", "extract", "all"],
                        choices=["none", "extract", "all"])
    parser.add_argument("--nodes", type=int, default=1, help="extract.nodes")
    parser.add_argument("--outdir", help="keep the productions here (default: a temporary directory)")
    parser.add_argument("--reference", help="compare the frames with this production directory's "
                        "(same night and seed) instead of the first setting's")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_grouping_", dir=args.outdir) as tmp:
        root = Path(args.outdir or tmp).resolve() / f"run{os.getpid()}"
        raw, calib = simulate(root / "sim", args.preset, args.narc, args.nflat, args.nscience)
        reference = frames(Path(args.reference)) if args.reference else None
        for chain in args.chains:
            workdir = root / f"prod_{chain}"
            try:
                wall, nsbatch = run_production(workdir, raw, calib, chain, args.nodes)
            except RuntimeError as err:
                print(f"grouping {chain}: FAILED: {err}", flush=True)
                continue
            products = frames(workdir)
            if reference is None:
                reference = products
            same = same_frames(products, reference)
            print(f"grouping {chain}: {nsbatch} sbatch, {wall:.0f} s, {len(products)} frames, "
                  f"{'identical to' if same else 'DIFFERENT from'} the reference's", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
