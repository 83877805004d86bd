"""Issue 11 acceptance, run as a user would, with the real steps on a simulated tiny night.

Every command is the README's, started by its absolute path in ``.venv/bin`` with
nothing on PATH (``PATH=/usr/bin:/bin``): the workflow's rules must find the
pipeline through the interpreter Snakemake runs in.  One production (2 arcs, 1
flat, 1 science exposure; camera b0) is built once; the tests then, in order:

1. rerun tasks through ``desired rerun`` (products identical), and break the
   environment of one arc's PSF fit (a missing module, injected through
   tests/faults/sitecustomize.py): the run fails loudly, the arc is *not*
   recorded as bad data, psfnight is not rebuilt without it, and after the
   environment is repaired the products are identical again;
2. truncate a raw science file: it stays in the exposure table marked bad with
   the reason, ``desired status`` shows its check as failed, the run exits
   non-zero, its old products are removed and the rest of the night is
   untouched; after repair everything is rebuilt identical;
3. truncate a raw arc: psfnight is rebuilt from the other arc and records the
   dropped one (header and PSFINPUT table, read back with fitsio and desispec);
   after repair it is identical again.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import fitsio
import numpy as np
import pytest

from desired.exposures import read_exposure_table
from desired.paths import findfile
from desired.workflow_status import read_step_status, sidecar_path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NIGHT = 20261124
PLAIN_PATH = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if os.path.isdir(p))
FAULTS = Path(__file__).resolve().parent / "faults"

pytestmark = pytest.mark.slow


def _env(**extra):
    env = dict(os.environ, PATH=PLAIN_PATH)
    env.pop("VIRTUAL_ENV", None)
    if extra.get("DESIRED_FAULT"):
        env["PYTHONPATH"] = os.pathsep.join([str(FAULTS)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def snakemake(prod, *args, **env):
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(prod),
           "--configfile", str(prod / "config.yaml"), "--profile", str(REPO / "profiles" / "local"), *args]
    return subprocess.run(cmd, cwd=prod, env=_env(**env), text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=3600)


def desired(prod, *args, **env):
    return subprocess.run([str(BIN / "desired"), *args], cwd=prod, env=_env(**env), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3600)


def status_rows(prod):
    out = desired(prod, "status", "--configfile", "config.yaml")
    assert out.returncode == 0, out.stdout
    return {line.split()[0]: [int(v) for v in line.split()[1:]] for line in out.stdout.splitlines()[2:]
            if line.strip() and line.split()[1].isdigit()}


def products(prod):
    """Every FITS product of the production tree (path relative to prod -> absolute path)."""
    return {str(p.relative_to(prod)): p for p in sorted((prod / "prod").rglob("*.fits"))}


def fits_arrays(path):
    """Every HDU's data (arrays, tables as field arrays) and header cards except dates, for comparison."""
    out = []
    with fitsio.FITS(str(path)) as fits:
        for hdu in fits:
            hdr = hdu.read_header()
            header = {k: hdr[k] for k in hdr.keys() if "DATE" not in k and k not in ("CHECKSUM", "DATASUM")}
            data = hdu.read() if hdu.has_data() else None
            out.append((header, data))
    return out


def _equal_arrays(a, b):
    """Element-wise identity, NaN equal to NaN (QA tables hold NaN for targets without a magnitude)."""
    if a.dtype.names:
        return a.dtype == b.dtype and all(_equal_arrays(a[n], b[n]) for n in a.dtype.names)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def same_fits(a, b):
    left, right = fits_arrays(a), fits_arrays(b)
    if len(left) != len(right):
        return False
    for (ha, da), (hb, db) in zip(left, right):
        if ha != hb:
            return False
        if (da is None) != (db is None):
            return False
        if da is not None and not _equal_arrays(np.asarray(da), np.asarray(db)):
            return False
    return True


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    """A finished production of a simulated tiny night, and a copy of its products as reference."""
    root = tmp_path_factory.mktemp("wf_failures")
    (root / "config.yaml").write_text(
        "simulate:\n  preset: tiny\n  night: 20261124\n  narc: 2\n  nflat: 1\n  nscience: 1\n")
    run = snakemake(root)
    assert run.returncode == 0, run.stdout[-5000:]
    reference = root / "reference"
    shutil.copytree(root / "prod", reference, ignore=shutil.ignore_patterns("logs", "benchmarks"))
    return root


def path(kind, **fields):
    return findfile(kind, root="prod", night=NIGHT, **fields)


def rows(prod):
    return {r["EXPID"]: r for r in read_exposure_table(str(prod / path("exposure_table")))}


def expids(prod, obstype):
    return [e for e, r in rows(prod).items() if r["OBSTYPE"] == obstype]


def assert_all_identical(prod, allow_missing=()):
    """Every reference product exists again and has identical arrays (dates aside)."""
    reference = prod / "reference"
    for ref in sorted(reference.rglob("*.fits")):
        rel = ref.relative_to(reference)
        now = prod / "prod" / rel
        if str(rel) in allow_missing:
            continue
        assert now.exists(), rel
        assert same_fits(ref, now), rel        # exposure-qa files too: NaN equal to NaN, dates aside


def qa_alarm_with_log(prod, task):
    """The production's QA report lists ``task`` as a failed job (alarm) whose log link resolves to its log."""
    import re
    index = prod / findfile("qa_report", root="prod")
    assert index.exists(), index
    text = index.read_text()
    m = re.search(rf"<li class='alarm'>{re.escape(task)}: <a href='([^']+)'>log</a>", text)
    assert m, text[:3000]
    log = (index.parent / m.group(1)).resolve()
    assert log.is_file() and log.stat().st_size > 0 and log.parent.parent.parent.name == "logs", log
    assert re.search(r"NFAILED: <span class='alarm'>[1-9]", text)


def test_report_of_the_run_renders_in_chromium(prod, tmp_path):
    """The report the workflow's qa_report job built for this night: every page (production, night, each
    exposure and camera, healpix pixels when the redshift stage ran) loads in headless Chromium, every
    image loads, every local link resolves; no failed job is listed."""
    test_qa = pytest.importorskip("test_qa")
    if test_qa.CHROMIUM is None:
        pytest.skip("chromium is not installed")
    index = prod / findfile("qa_report", root="prod")
    assert "No failed jobs." in index.read_text()
    nexp = len(rows(prod))
    npages, nimg = test_qa.assert_report_renders(index, 2 + 2 * nexp, 2 * nexp, tmp_path / "index.png")
    for expid in rows(prod):
        assert (index.parent / str(NIGHT) / f"{expid:08d}" / "b0.html").exists(), expid


def test_finished_run_all_done_and_readme_commands_without_path(prod):
    table = status_rows(prod)
    assert all(counts[0] == counts[-1] for counts in table.values()), table      # every task done
    # the healpix stage is counted: one task per spectra/coadd/redrock file, one zcatalog
    for step, kind in (("spectra", "spectra"), ("coadd", "coadd"), ("redshifts", "redrock")):
        made = sorted((prod / "prod" / "healpix").rglob(f"{kind}-*.fits"))
        assert made and table[step][-1] == len(made), (step, table)
    assert table["zcatalog"][-1] == 1, table
    coadd = sorted((prod / "prod" / "healpix").rglob("coadd-*.fits"))[0]
    task = "coadd_" + coadd.stem[len("coadd-"):].replace("-", "_")                  # coadd_main_dark_27256
    rerun = desired(prod, "rerun", task, "--configfile", "config.yaml", "--snakefile", str(REPO / "Snakefile"),
                    "--dry-run")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", rerun.stdout, re.M))
    assert jobs.get("coadd_healpix") == "1" and jobs.get("redshifts") == "1" and jobs.get("zcatalog") == "1", \
        rerun.stdout[-3000:]
    assert "spectra_healpix" not in jobs and "extract" not in jobs, jobs
    sci = expids(prod, "SCIENCE")[0]
    rerun = desired(prod, "rerun", f"extract_{NIGHT}_b0_{sci:08d}", "--configfile", "config.yaml",
                    "--snakefile", str(REPO / "Snakefile"), "--cores", "2")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    arc = expids(prod, "ARC")[0]
    rerun = desired(prod, "rerun", f"psf_{NIGHT}_b0_{arc:08d}", "--configfile", "config.yaml",
                    "--snakefile", str(REPO / "Snakefile"), "--cores", "2")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert "psfnight" in rerun.stdout and "extract" in rerun.stdout               # dependents rebuilt
    header = fitsio.read_header(str(prod / path("psfnight", camera="b0")))
    assert header["NINPSF"] == 2 and header["NDRPSF"] == 0
    assert_all_identical(prod)


def test_environment_error_is_loud_and_not_bad_data(prod):
    arc = expids(prod, "ARC")[0]
    task = f"psf_{NIGHT}_b0_{arc:08d}"
    run = desired(prod, "rerun", task, "--configfile", "config.yaml", "--snakefile", str(REPO / "Snakefile"),
                  "--cores", "2", DESIRED_FAULT=f"psf:{arc:08d}:import")
    assert run.returncode != 0, run.stdout[-4000:]
    status = prod / sidecar_path(path("psf", expid=arc, camera="b0"))
    assert read_step_status(str(status)) is None                 # not recorded as a failed (bad) arc
    failed = desired(prod, "status", "--configfile", "config.yaml", "--failed")
    assert task in failed.stdout and "injected_missing_module" in failed.stdout, failed.stdout
    assert f"{task}:" in run.stdout                               # the run's summary names it
    qa_alarm_with_log(prod, task)                                 # the report is built after the failure
    # psfnight and everything after it for b0 are not trusted any more; the flat's preproc is
    assert not (prod / path("psfnight", camera="b0")).exists()
    sci = expids(prod, "SCIENCE")[0]
    assert not (prod / path("frame", expid=sci, camera="b0")).exists()
    assert (prod / path("preproc", expid=sci, camera="b0")).exists()
    assert status_rows(prod)["psf"][4] == 1
    repaired = snakemake(prod)
    assert repaired.returncode == 0, repaired.stdout[-4000:]
    assert_all_identical(prod)


def _truncate(raw):
    original = raw.read_bytes()
    raw.write_bytes(original[: len(original) // 2])
    return original


def test_corrupt_raw_exposure_visible_then_repaired(prod):
    sci = expids(prod, "SCIENCE")[0]
    flat = expids(prod, "FLAT")[0]
    flat_frame = prod / path("frame", expid=flat, camera="b0")
    flat_stat = flat_frame.stat()
    raw = prod / "sim" / "raw" / findfile("raw", night=NIGHT, expid=sci)
    original = _truncate(raw)
    run = snakemake(prod)
    assert run.returncode != 0
    assert f"check_raw_{NIGHT}_{sci:08d}" in run.stdout, run.stdout[-3000:]
    row = rows(prod)[sci]                                         # still in the table, marked bad
    assert row["LASTSTEP"] == "ignore" and "truncated" in row["COMMENTS"], row
    failed = desired(prod, "status", "--configfile", "config.yaml", "--failed")
    assert f"check_raw_{NIGHT}_{sci:08d}" in failed.stdout and "truncated" in failed.stdout, failed.stdout
    assert status_rows(prod)["check_raw"][4] == 1
    qa_alarm_with_log(prod, f"check_raw_{NIGHT}_{sci:08d}")
    for kind in ("preproc", "shifted_psf", "frame"):              # stale products removed
        assert not (prod / path(kind, expid=sci, camera="b0")).exists(), kind
    assert flat_frame.stat().st_mtime_ns == flat_stat.st_mtime_ns  # the rest of the night untouched
    raw.write_bytes(original)
    repaired = snakemake(prod)
    assert repaired.returncode == 0, repaired.stdout[-4000:]
    assert "check_raw" not in desired(prod, "status", "--configfile", "config.yaml").stdout
    assert_all_identical(prod)


def test_corrupt_arc_recorded_by_psfnight_then_repaired(prod):
    arcs = expids(prod, "ARC")
    raw = prod / "sim" / "raw" / findfile("raw", night=NIGHT, expid=arcs[1])
    original = _truncate(raw)
    run = snakemake(prod)
    assert run.returncode != 0                                   # the unreadable arc is a failed check
    psfnight = prod / path("psfnight", camera="b0")
    header = fitsio.read_header(str(psfnight))
    assert header["NINPSF"] == 1 and header["NDRPSF"] == 1
    assert header["INPSF000"] == f"psf-b0-{arcs[0]:08d}.fits" and header["DRPSF000"] == f"desi-{arcs[1]:08d}.fits.fz"
    table = fitsio.read(str(psfnight), "PSFINPUT")
    assert list(table["USED"]) == [True, False] and "truncated" in table["REASON"][1]
    from desired.io.psf import read_psf
    assert read_psf(str(psfnight)).meta["NDRPSF"] == 1                # our reader takes the extra HDU
    try:
        import specter  # noqa: F401  (desispec's trace reader needs it)
    except ImportError:
        pass
    else:
        from desispec.io import read_xytraceset
        assert read_xytraceset(str(psfnight)).nspec > 0
    sci = expids(prod, "SCIENCE")[0]
    assert (prod / path("frame", expid=sci, camera="b0")).exists()   # rebuilt with the one good arc
    raw.write_bytes(original)
    repaired = snakemake(prod)
    assert repaired.returncode == 0, repaired.stdout[-4000:]
    assert fitsio.read_header(str(psfnight))["NINPSF"] == 2
    assert_all_identical(prod)
