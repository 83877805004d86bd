"""The mini night through `snakemake --profile profiles/slurm` on a real SLURM cluster.

.ci/run starts a single-node cluster (.ci/start_slurm.sh: slurm-wlm + munge,
slurmctld + slurmd on localhost, MpiDefault=pmix).  psf and extract run as MPI
jobs: `srun -n 2 <python> -m desired psf --mpi` (ranks split the bundles via mpi4py).
Skips when no controller answers, when mpi4py is missing, or while a step the
workflow calls is not implemented yet.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _controller_reachable():
    if shutil.which("sinfo") is None:
        return False, "sinfo not installed (no SLURM client)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (subprocess.TimeoutExpired, OSError) as err:
        return False, f"sinfo failed: {err}"
    if out.returncode != 0:
        return False, f"no SLURM controller reachable: {out.stderr.strip()[:200]}"
    if not re.search(r"idle|mix|alloc", out.stdout):
        return False, f"no usable SLURM node (states: {out.stdout.split()})"
    return True, ""


REACHABLE, WHY = _controller_reachable()
STEPS = ("simulate", "preproc", "psf", "psfnight", "traceshift", "extract")
MISSING = [s for s in STEPS if importlib.util.find_spec(f"desired.scripts.{s}") is None]


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.skipif(not REACHABLE, reason=WHY)
@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="mpi4py not installed (MPI rules need it)")
@pytest.mark.skipif(bool(MISSING), reason=f"step(s) not implemented yet: {', '.join(MISSING)}")
def test_mini_night_under_slurm(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "simulate:\n  preset: mini\n  night: 20261124\n  narc: 2\n  nflat: 1\n  nscience: 1\n")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    start = time.time()
    run = subprocess.run([str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                          "--configfile", str(tmp_path / "config.yaml"), "--profile", str(REPO / "profiles" / "slurm")],
                         cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1800)
    wall = time.time() - start
    assert run.returncode == 0, run.stdout[-6000:]
    submitted = re.findall(r"submitted to slurm with external jobid|Job \d+ has been submitted with SLURM jobid", run.stdout)
    print(f"SLURM mini night: wall {wall:.0f} s, {len(submitted)} jobs submitted")
    assert submitted
    # at least one MPI rule ran 2 ranks under srun
    assert re.search(r"srun -n 2 \S+ -m desired (psf|extract) .*--mpi", run.stdout), run.stdout[-4000:]
    frames = list((tmp_path / "prod" / "exposures").rglob("frame-*.fits"))
    assert frames
