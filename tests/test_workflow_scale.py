"""Survey-size productions: config `stages` splits the DAG into a per-night half and a healpix half.

Dry runs only (nothing is computed): a small raw tree (1 night, 1 arc, 1 flat, 2
science exposures of cameras b0/r0, raw fibermaps with targets) is processed as
`stages: all` (one DAG), `stages: night` (raw -> cframe and exposure QA of the
configured nights, no healpix job) and `stages: healpix` (spectra, coadds,
redshifts and catalogs of every night over the existing cframes, with none of
the per-night rules in the DAG).  The two halves together are the whole DAG but
for the production's QA report.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from desired.io.fibermap import write_fibermap
from desired.io.raw import write_raw
from desired.paths import findfile

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
NIGHT = 20261124
CAMERAS = ("b0", "r0")
LAYOUT = {1: "ARC", 2: "FLAT", 3: "SCIENCE", 4: "SCIENCE"}
PER_NIGHT = {"preproc", "preproc_arc", "psf", "psfnight", "traceshift", "extract", "fiberflat",
             "fiberflatnight", "sky", "stdstars", "fluxcalib", "cframe", "qa_exposure", "fibermap",
             "exposure_table"}
HEALPIX = {"spectra_healpix", "coadd_healpix", "healpix_list", "redshifts", "zcatalog"}


@pytest.fixture()
def production(tmp_path):
    raw = tmp_path / "raw"
    for expid, obstype in LAYOUT.items():
        header = {"EXPID": expid, "NIGHT": NIGHT, "OBSTYPE": obstype, "EXPTIME": 10.0,
                  "TILEID": 1000 + expid if obstype == "SCIENCE" else -1}
        sections = {"BIASSECA": "[1:2, 1:8]", "DATASECA": "[3:8, 1:8]", "CCDSECA": "[1:6, 1:8]"}
        write_raw(findfile("raw", root=str(raw), night=NIGHT, expid=expid), header,
                  {c: (np.full((8, 8), 1000, np.uint16), dict(sections)) for c in CAMERAS})
        if obstype == "SCIENCE":
            rng = np.random.default_rng(expid)
            table = Table({"TARGETID": np.arange(50, dtype=np.int64), "FIBER": np.arange(50, dtype=np.int32),
                           "TARGET_RA": 150.0 + rng.uniform(-1, 1, 50), "TARGET_DEC": 2.0 + rng.uniform(-1, 1, 50)})
            write_fibermap(findfile("raw_fibermap", root=str(raw), night=NIGHT, expid=expid), table,
                           {"NIGHT": NIGHT, "EXPID": expid, "TILEID": 1000 + expid, "SURVEY": "main",
                            "FAPRGRM": "dark"})
    (tmp_path / "calib").mkdir()
    for cam in CAMERAS:
        for kind in ("calib_ccd", "calib_psf"):
            Path(findfile(kind, root=tmp_path / "calib", camera=cam)).write_text(f"{kind} {cam}\n")
    (tmp_path / "config.yaml").write_text("raw_dir: raw\ncalib_dir: calib\nredux_dir: prod\n")
    return tmp_path


def dry_run(workdir, stages):
    """Rule -> job count of `snakemake -n --config stages=...` in workdir."""
    run = subprocess.run([SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                          "--configfile", str(workdir / "config.yaml"), "-n", "--config", f"stages={stages}"],
                         cwd=workdir, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=dict(os.environ, PATH="/usr/bin:/bin"))
    assert run.returncode == 0, run.stdout[-3000:]
    table = run.stdout.split("Job stats:")[-1]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}
    counts.pop("total", None)
    return counts


def test_stages_split_the_dag(production):
    whole = dry_run(production, "all")
    assert whole.get("spectra_healpix", 0) > 0 and whole["qa_report"] == 1 and whole["cframe"] == 4, whole

    night = dry_run(production, "night")
    assert set(night) - {"all"} <= PER_NIGHT, night                      # no healpix job, no QA report
    assert night["cframe"] == 4 and night["qa_exposure"] == 4, night

    # the healpix half starts from the cframes the per-night runs made (placeholders here)
    for expid, obstype in LAYOUT.items():
        if obstype == "SCIENCE":
            for cam in CAMERAS:
                cframe = Path(findfile("cframe", root=production / "prod", night=NIGHT, expid=expid, camera=cam))
                cframe.parent.mkdir(parents=True, exist_ok=True)
                cframe.write_text("cframe placeholder\n")
    healpix = dry_run(production, "healpix")
    assert set(healpix) - {"all"} <= HEALPIX, healpix                     # none of the per-night rules
    assert healpix["spectra_healpix"] == whole["spectra_healpix"], (healpix, whole)

    # together the halves are the whole DAG but for the production's QA report
    merged = {k: night.get(k, 0) + healpix.get(k, 0) for k in set(night) | set(healpix) if k != "all"}
    assert merged == {k: v for k, v in whole.items() if k not in ("all", "qa_report")}, (merged, whole)
