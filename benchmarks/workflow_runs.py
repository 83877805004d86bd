"""Helpers of the benchmarks that run the Snakemake production (bench_grouping, bench_kill_resume).

Simulating a night's raw and calib trees, writing a production's config, and the
snakemake command line and environment (the venv's binaries first on PATH, so
`srun`-started steps find the same interpreter).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NIGHT = 20261124


def simulate(root, preset, narc, nflat, nscience, night=NIGHT, seed=0):
    """Simulate one night's raw and calib trees under root (truth under root/truth); return (raw_dir, calib_dir)."""
    raw, calib, truth = root / "raw", root / "calib", root / "truth"
    subprocess.run([sys.executable, "-m", "desired", "simulate", "--preset", preset, "--night", str(night),
                    "--raw-dir", str(raw), "--calib-dir", str(calib), "--truth-dir", str(truth),
                    "--narc", str(narc), "--nflat", str(nflat), "--nscience", str(nscience), "--seed", str(seed)],
                   check=True, stdout=subprocess.DEVNULL)
    return raw, calib


def new_production(workdir, raw, calib, extra="", night=NIGHT):
    """Create a production directory whose config.yaml processes `night` from raw/calib (plus `extra` yaml)."""
    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(f"raw_dir: {raw}\ncalib_dir: {calib}\nnights: [{night}]\n{extra}")


def snakemake_command(workdir, profile, *extra):
    """The snakemake command line of the production in workdir under profiles/<profile>."""
    bindir = Path(sys.executable).parent
    return [str(bindir / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), "--profile", str(REPO / "profiles" / profile), *extra]


def environment():
    """os.environ with the interpreter's bin directory first on PATH."""
    bindir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
