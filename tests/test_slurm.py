"""The mini night through `snakemake --profile profiles/slurm` on a real SLURM cluster,
and one extraction spread over two SLURM nodes.

.ci/run starts a two-node cluster (.ci/start_slurm.sh: slurm-wlm + munge,
slurmctld on the host, slurmd cn1 and cn2 each in its own network and UTS
namespace, MpiDefault=pmix; one node on localhost where namespaces cannot be
made).  psf and extract run as MPI jobs: `srun -N nodes -n tasks desired psf
--mpi` (ranks split the bundles via mpi4py).  Skips when no controller answers,
when mpi4py is missing, or while a step the workflow calls is not implemented
yet; the two-node test skips when fewer than two nodes are idle.
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


def _idle_nodes():
    if shutil.which("sinfo") is None:
        return []
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=20)
    except (subprocess.TimeoutExpired, OSError):
        return []
    return sorted({line.split()[0] for line in out.stdout.splitlines() if line.split()[1:2] == ["idle"]})


REACHABLE, WHY = _controller_reachable()
IDLE = _idle_nodes() if REACHABLE else []
STEPS = ("simulate", "preproc", "psf", "psfnight", "traceshift", "extract")
MISSING = [s for s in STEPS if importlib.util.find_spec(f"desired.scripts.{s}") is None]


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.skipif(not REACHABLE, reason=WHY)
@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="mpi4py not installed (MPI rules need it)")
@pytest.mark.skipif(bool(MISSING), reason=f"step(s) not implemented yet: {', '.join(MISSING)}")
def test_mini_night_under_slurm(tmp_path):
    # extraction spread over both nodes when the cluster has two (sbatch --nodes=2, srun -N 2)
    nodes = 2 if len(IDLE) >= 2 else 1
    (tmp_path / "config.yaml").write_text(
        "simulate:\n  preset: mini\n  night: 20261124\n  narc: 2\n  nflat: 1\n  nscience: 1\n"
        f"extract:\n  nodes: {nodes}\n  tasks: 2\n")
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
    # the MPI rules ran 2 ranks under srun, the extraction on `nodes` nodes
    assert re.search(r"srun -N 1 -n 2 .*desired .*psf .*--mpi", run.stdout), run.stdout[-4000:]
    assert re.search(rf"srun -N {nodes} -n 2 .*desired .*extract .*--mpi", run.stdout), run.stdout[-4000:]
    frames = list((tmp_path / "prod" / "exposures").rglob("frame-*.fits"))
    assert frames
    layouts = [m for log in tmp_path.rglob("extract*.log")
               for m in re.findall(r"2 ranks on (\d) node", log.read_text())]
    assert layouts and set(layouts) == {str(nodes)}, layouts


@pytest.mark.slurm
@pytest.mark.skipif(not REACHABLE, reason=WHY)
@pytest.mark.skipif(len(IDLE) < 2, reason=f"fewer than two idle SLURM nodes ({IDLE})")
@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="mpi4py not installed")
def test_extraction_across_two_nodes_gives_the_serial_frame(tmp_path):
    """`srun -N 2 -n 2 desired extract --mpi`: one rank on each node, the serial frame bit for bit."""
    import numpy as np
    from desired.io.frame import read_frame
    from desired.io.image import write_image
    from desired.io.psf import write_psf
    from desired.image import Image
    from test_extract import READNOISE, make_psf, render, true_spectra
    from desired.extract import wavelength_grid

    rng = np.random.default_rng(15)
    psf = make_psf(nfiber=16)
    wave = wavelength_grid(wmin=3600.0, wmax=3760.0, dw=0.8)
    pix, ivar, _ = render(psf, wave, true_spectra(psf.nfiber, wave, rng), rng)
    write_image(tmp_path / "pre.fits", Image(pix, ivar, readnoise=READNOISE, camera="b0"))
    write_psf(tmp_path / "psf.fits", psf, header={"CAMERA": "b0"})
    common = [sys.executable, "-m", "desired", "--log-level", "INFO", "extract", "--image", str(tmp_path / "pre.fits"),
              "--psf", str(tmp_path / "psf.fits"), "--wavelength", "3600,3760,0.8", "--bundlesize", "4"]
    serial = subprocess.run(common + ["--outfile", str(tmp_path / "serial.fits")], capture_output=True, text=True,
                            timeout=300)
    assert serial.returncode == 0, serial.stderr[-2000:]
    # each rank says where it runs, then becomes the extraction
    probe = 'echo "RANK $SLURM_PROCID node=$SLURMD_NODENAME host=$(hostname)"; exec "$@"'
    run = subprocess.run(["srun", "-N", "2", "-n", "2", "--time", "10", "sh", "-c", probe, "sh"] + common
                         + ["--outfile", str(tmp_path / "mpi.fits"), "--mpi"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-3000:])
    ranks = {r: (n, h) for r, n, h in re.findall(r"RANK (\d+) node=(\S+) host=(\S+)", run.stdout)}
    assert sorted(ranks) == ["0", "1"], run.stdout
    nodes = {n for n, _ in ranks.values()}
    assert len(nodes) == 2 and nodes <= set(IDLE), ranks            # one rank on each node
    assert all(n == h for n, h in ranks.values()), ranks            # the node's own host name
    assert "2 ranks on 2 node(s)" in run.stdout + run.stderr, run.stderr[-2000:]   # mpi4py saw both
    a, b = read_frame(tmp_path / "mpi.fits"), read_frame(tmp_path / "serial.fits")
    for name in ("flux", "ivar", "mask", "resolution_data", "wave", "fibers"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
