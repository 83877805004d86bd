"""The Snakemake workflow: DAG, config schema, failure isolation, reruns, new data, resume.

Most tests drive the real Snakefile with *stand-in* compute steps: the shell
rules (psf, extract: they run under srun) call a stand-in ``desired`` executable
put first on PATH, and the script rules' adapters (workflow/scripts/*.py) call
``desired.scripts.<step>`` functions that a ``sitecustomize`` module on
PYTHONPATH replaces (preproc's ``run``, psfnight's ``combine_files``,
traceshift's ``run``).  The real ``exposure-table``/``fibermap``/``status``
steps and the adapters themselves run; the stand-ins read raw cameras with the
real reader (so a corrupt raw exposure fails exactly where the real preproc
would) and write a small output naming their inputs.  That exercises the
workflow logic (which jobs run, in what order, with which inputs) in seconds.
``test_real_tiny_night`` runs the real steps on a simulated ``tiny`` night.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from desired.exposures import read_exposure_table, scan_night, write_exposure_table, override_rows
from desired.io.raw import write_raw
from desired.paths import findfile
from desired.workflow_status import parse_task_name, task_name, sidecar_path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
NIGHT = 20261124
CAMERAS = ("b0", "r0")
#: expid -> OBSTYPE of the synthetic night
LAYOUT = {1: "ARC", 2: "ARC", 3: "ARC", 4: "FLAT", 5: "FLAT", 6: "SCIENCE", 7: "SCIENCE"}

#: stand-ins of the library steps (imported at interpreter start through sitecustomize on PYTHONPATH):
#: the script rules' adapters call desired.scripts.<step>.run / combine_files, the shell rules
#: (psf, extract) run `python -m desired`, whose desired.cli.main is replaced here for those two steps.
#: FAKE_FAULT="step:substring:kind" makes the job of `step` whose output path contains `substring`
#: fail with a data error (kind data), an import error (import) or SIGKILL as if out of memory (kill).
FAKE_STEPS = textwrap.dedent('''\
    """Stand-in steps used by tests/test_workflow.py (see its docstring)."""
    import os, signal, sys, time
    import desired.cli, desired.scripts.preproc, desired.scripts.psfnight, desired.scripts.traceshift

    def _fault(step, outfile):
        spec = os.environ.get("FAKE_FAULT", "")
        for item in filter(None, spec.split(",")):
            fstep, sub, kind = item.split(":")
            if fstep == step and sub in os.path.basename(outfile):
                if kind == "data":
                    from desired.io.util import DataModelError
                    raise DataModelError(outfile, "injected data error")
                if kind == "import":
                    raise ModuleNotFoundError("No module named 'injected_missing_module'", name="injected_missing_module")
                if kind == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)

    def _write(step, outfile, inputs, extra=""):
        _fault(step, outfile)
        with open(outfile, "w") as fh:
            fh.write("partial\\n")
        if os.environ.get("FAKE_SLEEP_STEP") == step:
            time.sleep(float(os.environ.get("FAKE_SLEEP", "30")))
        with open(outfile, "w") as fh:
            fh.write(step + "\\n" + "\\n".join(sorted(i for i in inputs if i)) + "\\n" + extra)

    def preproc(infile, camera, outfile, fibermap=None, **options):
        from desired.io.raw import read_raw_camera
        read_raw_camera(infile, camera)
        _write("preproc", outfile, [infile, fibermap])

    def combine_files(infiles, outfile, nsig=4.0, dropped=()):
        _write("psfnight", outfile, infiles, extra="".join(f"dropped {n}: {r}\\n" for n, r in dropped))

    def traceshift(image, psf, outfile, sky_template=None, **options):
        _write("traceshift", outfile, [image, psf], extra=f"sky_template {sky_template}\\n")

    _real_main = desired.cli.main

    def main(argv=None):
        argv = sys.argv[1:] if argv is None else list(argv)
        step = next((a for a in argv if not a.startswith("-")), None)
        if step not in ("psf", "extract"):
            return _real_main(argv)
        opts, key = {}, None
        for a in argv[argv.index(step) + 1:]:
            if a.startswith("--"):
                key = a[2:]
                opts.setdefault(key, [])
            elif key:
                opts[key].append(a)
        inputs = sorted(sum((opts.get(k, []) for k in ("infile", "image", "psf", "input-psf", "fibermap")), []))
        try:
            _write(step, opts["outfile"][0], inputs)
        except Exception as err:
            return desired.cli.report_error(f"desired {step}", err)
        print(f"{step} inputs {inputs}")
        return 0

    desired.scripts.preproc.run = preproc
    desired.scripts.psfnight.combine_files = combine_files
    desired.scripts.traceshift.run = traceshift
    desired.cli.main = main

    # calibration stand-ins (rules/calib.smk)
    import desired.scripts.fiberflat, desired.scripts.fiberflatnight, desired.scripts.sky
    desired.scripts.fiberflat.run = lambda infile, outfile, **kw: _write("fiberflat", outfile, [infile])
    desired.scripts.fiberflatnight.run = lambda infiles, outfile, **kw: _write("fiberflatnight", outfile, infiles)
    desired.scripts.sky.run = lambda infile, fiberflat, outfile, **kw: _write("sky", outfile, [infile, fiberflat])

    # flux-calibration stand-ins (rules/fluxcalib.smk)
    import desired.scripts.stdstars, desired.scripts.fluxcalib, desired.scripts.cframe
    desired.scripts.stdstars.run = lambda frames, outfile, fiberflats=(), skys=(), **kw: _write(
        "stdstars", outfile, list(frames) + list(fiberflats) + list(skys))
    desired.scripts.fluxcalib.run = lambda frame, models, outfile, fiberflat=None, sky=None, **kw: _write(
        "fluxcalib", outfile, [frame, models, fiberflat, sky])
    desired.scripts.cframe.run = lambda frame, calib, outfile, fiberflat=None, sky=None, **kw: _write(
        "cframe", outfile, [frame, calib, fiberflat, sky])
''')


def _write_exposure(raw, expid, obstype, bad=False):
    header = {"EXPID": expid, "NIGHT": NIGHT, "OBSTYPE": obstype, "EXPTIME": 10.0,
              "TILEID": 1000 if obstype == "SCIENCE" else -1}
    sections = {} if bad else {"BIASSECA": "[1:2, 1:8]", "DATASECA": "[3:8, 1:8]", "CCDSECA": "[1:6, 1:8]"}
    cams = {c: (np.full((8, 8), 1000, np.uint16), dict(sections)) for c in CAMERAS}
    write_raw(findfile("raw", root=raw, night=NIGHT, expid=expid), header, cams)


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory):
    """A synthetic raw + calib tree (3 arcs, 2 flats, 2 science; cameras b0, r0)."""
    root = tmp_path_factory.mktemp("wfsrc")
    for expid, obstype in LAYOUT.items():
        _write_exposure(str(root / "raw"), expid, obstype)
    (root / "calib").mkdir()
    for cam in CAMERAS:
        for kind in ("calib_ccd", "calib_psf"):
            Path(findfile(kind, root=root / "calib", camera=cam)).write_text(f"{kind} {cam}\n")
    return root


@pytest.fixture()
def workdir(source_tree, tmp_path):
    """A fresh production directory: copy of the raw/calib tree, config with relative paths, stand-in steps."""
    shutil.copytree(source_tree / "raw", tmp_path / "raw")
    shutil.copytree(source_tree / "calib", tmp_path / "calib")
    (tmp_path / "config.yaml").write_text("raw_dir: raw\ncalib_dir: calib\nredux_dir: prod\n")
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "sitecustomize.py").write_text(FAKE_STEPS)
    return tmp_path


#: PATH of a fresh shell: the environment's bin directory is NOT on it (commands run as .venv/bin/...)
PLAIN_PATH = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if os.path.isdir(p))


def _env(workdir, **extra):
    env = dict(os.environ)
    env["PATH"] = PLAIN_PATH
    env["PYTHONPATH"] = os.pathsep.join([str(workdir / "fakebin")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def snakemake(workdir, *args, configfile="config.yaml", **kwargs):
    """Run the repository's Snakefile in ``workdir``; return CompletedProcess (stdout+stderr text)."""
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / configfile), *args]
    return subprocess.run(cmd, cwd=workdir, env=kwargs.pop("env", _env(workdir)), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def job_counts(text):
    """Parse the last 'Job stats' table of a Snakemake run: rule -> count."""
    blocks = text.split("Job stats:")
    if len(blocks) < 2:
        return {}
    counts = {}
    for line in blocks[-1].splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line)
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


def frame(workdir, expid, cam):
    return workdir / findfile("frame", root="prod", night=NIGHT, expid=expid, camera=cam)


def science_frames(workdir):
    return [frame(workdir, e, c) for e, t in LAYOUT.items() if t != "ARC" for c in CAMERAS]


# ------------------------------------------------------------------ exposure table and names
def test_exposure_table_scan_and_override(source_tree, tmp_path):
    rows = scan_night(str(source_tree / "raw"), NIGHT)
    assert [(r["EXPID"], r["OBSTYPE"]) for r in rows] == list(LAYOUT.items())
    assert all(r["CAMERAS"] == list(CAMERAS) for r in rows)
    path = tmp_path / "t.csv"
    write_exposure_table(str(path), rows)
    back = read_exposure_table(str(path))
    assert [(r["EXPID"], r["OBSTYPE"], r["TILEID"], r["EXPTIME"]) for r in back] == \
        [(e, t, 1000 if t == "SCIENCE" else -1, 10.0) for e, t in LAYOUT.items()]
    fixed = override_rows(back, [dict(back[0], OBSTYPE="FLAT")])
    assert [r["OBSTYPE"] for r in fixed] == ["FLAT"]          # the override replaces the whole night


def test_task_names_round_trip():
    assert task_name("extract", night=NIGHT, camera="r0", expid=12) == "extract_20261124_r0_00000012"
    assert parse_task_name("psfnight_20261124_z1") == ("psfnight", {"night": "20261124", "camera": "z1"})
    assert parse_task_name("psf_20261124_b0_00000003")[0] == "psf"
    assert task_name("redshifts", survey="main", program="dark", healpix=27256) == "redshifts_main_dark_27256"
    assert parse_task_name("coadd_sv1_bright_9") == ("coadd", {"survey": "sv1", "program": "bright", "healpix": "9"})
    assert parse_task_name("zcatalog_main_dark") == ("zcatalog", {"survey": "main", "program": "dark"})
    for bad in ("extract_20261124_00000012", "bogus_20261124", "preproc_2026112_b0_00000001",
                "spectra_main_dark_x1", "zcatalog_Main_dark"):
        with pytest.raises(ValueError):
            parse_task_name(bad)


# ------------------------------------------------------------------ DAG, lint, schema
def test_dry_run_lists_every_step(workdir):
    """A fresh production directory over an existing raw tree: the dry run lists every job of every step."""
    dry = snakemake(workdir, "-n")
    assert dry.returncode == 0, dry.stdout[-3000:]
    counts = job_counts(dry.stdout)
    assert counts == {"exposure_table": 1, "preproc": 8, "preproc_arc": 6, "psf": 6, "psfnight": 2,
                      "traceshift": 8, "extract": 8, "fiberflat": 4, "fiberflatnight": 2, "sky": 4,
                      "stdstars": 2, "fluxcalib": 4, "cframe": 4, "qa_exposure": 7, "qa_report": 1,
                      "all": 1}, counts
    assert "frame-r0-00000007.fits" in dry.stdout and "psfnight-b0-20261124.fits" in dry.stdout
    assert not (workdir / "prod").exists()                      # a dry run writes nothing
    # --forcerun of one file in a fresh directory is still accepted
    one = findfile("frame", root="prod", night=NIGHT, expid=7, camera="r0")
    assert snakemake(workdir, "-n", "--forcerun", one).returncode == 0


def test_dry_run_default_config_simulates(tmp_path):
    """With raw_dir null the default config simulates its night first (checkpointed DAG)."""
    dry = subprocess.run([SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                          "--configfile", str(REPO / "config" / "config.yaml"), "-n"],
                         cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=dict(os.environ, PATH=PLAIN_PATH))
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert job_counts(dry.stdout) == {"simulate": 1, "exposure_table": 1, "all": 1}
    assert "desired --log-file" in dry.stdout or "simulate" in dry.stdout


def test_lint_clean(workdir):
    lint = snakemake(workdir, "--lint")
    assert lint.returncode == 0, lint.stdout[-3000:]
    assert "Congratulations" in lint.stdout, lint.stdout[-3000:]


def test_rules_shape():
    """Every rule logs and names the conda env; only the srun-launched MPI rules use shell:, the others
    a thin workflow/scripts adapter calling one desired.scripts.<step>.run."""
    text = "".join((REPO / "rules" / name).read_text() for name in sorted(os.listdir(REPO / "rules")))
    blocks = re.split(r"^(?=(?:rule|checkpoint) )", text, flags=re.M)[1:]
    rules = {re.match(r"\w+ (\w+):", b).group(1): b for b in blocks}
    assert {"simulate", "exposure_table", "fibermap", "preproc", "preproc_arc", "psf", "psfnight",
            "traceshift", "extract"} <= set(rules)
    for name, block in rules.items():
        assert "    log:" in block and 'conda:\n        "../envs/desired.yaml"' in block, name
        if name in ("psf", "extract", "redshifts"):
            assert "    shell:" in block and "{params.launch}" in block and "    script:" not in block, name
            continue
        assert "    shell:" not in block, name
        script = re.search(r'script:\n\s+"\.\./(workflow/scripts/\w+\.py)"', block).group(1)
        source = (REPO / script).read_text()
        assert len(source.splitlines()) <= 30, script
        assert re.search(r"^from desired\.scripts\.\w+ import run$", source, re.M), script
        assert "step_logging(snakemake.log[0])" in source, script


def test_misspelled_config_key_fails_before_running(workdir):
    (workdir / "bad.yaml").write_text("raw_dir: raw\ncalib_dir: calib\nredux_dir: prod\npreproc:\n  cosmic: false\n")
    run = snakemake(workdir, "--cores", "1", configfile="bad.yaml")
    assert run.returncode != 0
    assert "cosmic" in run.stdout and "additional" in run.stdout.lower(), run.stdout[-2000:]
    assert not (workdir / "prod").exists()


# ------------------------------------------------------------------ runs with the stand-in steps
def test_full_run_and_status(workdir):
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stdout[-4000:]
    for f in science_frames(workdir):
        assert f.exists(), f
    psfnight = workdir / findfile("psfnight", root="prod", night=NIGHT, camera="b0")
    combined = [line for line in psfnight.read_text().splitlines()[1:]]
    assert len(combined) == 3 and all("psf-b0-0000000" in p for p in combined)
    # no configured template and none in the calib tree: traceshift gets None (built-in line list)
    shifted = workdir / findfile("shifted_psf", root="prod", night=NIGHT, expid=6, camera="r0")
    assert shifted.read_text().splitlines()[-1] == "sky_template None"
    status = subprocess.run([str(BIN / "desired"), "status", "--configfile", "config.yaml", "--schema",
                             str(REPO / "config" / "config.schema.yaml")], cwd=workdir, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert status.returncode == 0, status.stdout
    rows = {line.split()[0]: line.split()[1:] for line in status.stdout.splitlines()[2:] if line.strip()}
    assert rows["extract"] == ["8", "0", "0", "0", "0", "8"], status.stdout
    assert rows["psf"] == ["6", "0", "0", "0", "0", "6"], status.stdout
    assert rows["fiberflat"] == ["4", "0", "0", "0", "0", "4"], status.stdout
    assert rows["fiberflatnight"] == ["2", "0", "0", "0", "0", "2"], status.stdout
    assert rows["sky"] == ["4", "0", "0", "0", "0", "4"], status.stdout
    assert rows["stdstars"] == ["2", "0", "0", "0", "0", "2"], status.stdout
    assert rows["fluxcalib"] == ["4", "0", "0", "0", "0", "4"], status.stdout
    assert rows["cframe"] == ["4", "0", "0", "0", "0", "4"], status.stdout


def test_failure_isolation_keep_going(workdir):
    _write_exposure(str(workdir / "raw"), 2, "ARC", bad=True)        # one arc unreadable: every camera
    run = snakemake(workdir, "--cores", "2", "--keep-going")
    assert run.returncode == 0, run.stdout[-4000:]                   # the arc chain absorbs its failure
    for cam in CAMERAS:
        status = sidecar_path(str(workdir / findfile("psf", root="prod", night=NIGHT, expid=2, camera=cam)))
        first, reason = open(status).read().splitlines()
        assert first == "failed" and "preproc of this arc failed" in reason and "BIASSEC" in reason, reason
        psfnight = workdir / findfile("psfnight", root="prod", night=NIGHT, camera=cam)
        lines = psfnight.read_text().splitlines()[1:]
        used = [p for p in lines if not p.startswith("dropped")]
        assert sorted(os.path.basename(p) for p in used) == [f"psf-{cam}-00000001.fits", f"psf-{cam}-00000003.fits"]
        dropped = [p for p in lines if p.startswith("dropped")]        # psfnight records the dropped arc and why
        assert len(dropped) == 1 and f"psf-{cam}-00000002.fits" in dropped[0] and "BIASSEC" in dropped[0], lines
        # the adapter logged the absorbed failure with its traceback and left no image behind
        arc = {"night": NIGHT, "expid": 2, "camera": cam}
        assert open(sidecar_path(str(workdir / findfile("preproc", root="prod", **arc)))).read().startswith("failed\ndata error")
        assert not (workdir / findfile("preproc", root="prod", **arc)).exists()
        log = (workdir / "prod" / "logs" / "preproc" / str(NIGHT) / f"preproc_{NIGHT}_{cam}_00000002.log").read_text()
        assert "Traceback" in log and "recorded in" in log and "desi-00000002" in log, log
    for f in science_frames(workdir):
        assert f.exists(), f
    # now a science exposure is corrupt: only its chain fails, with a non-zero exit
    _write_exposure(str(workdir / "raw"), 8, "SCIENCE", bad=True)
    run = snakemake(workdir, "--cores", "2", "--keep-going")
    assert run.returncode != 0
    assert not frame(workdir, 8, "b0").exists() and not frame(workdir, 8, "r0").exists()
    assert all(f.exists() for f in science_frames(workdir))
    status = subprocess.run([str(BIN / "desired"), "status", "--configfile", "config.yaml", "--schema",
                             str(REPO / "config" / "config.schema.yaml")], cwd=workdir, text=True,
                            env=_env(workdir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rows = {line.split()[0]: line.split()[1:] for line in status.stdout.splitlines()[2:] if line.strip()}
    # columns done ready waiting running failed total
    assert rows["psf"][4] == "2" and rows["preproc"][4] == "4", status.stdout
    assert rows["extract"][0] == "8" and rows["extract"][2] == "2", status.stdout


def test_night_without_arcs(workdir):
    for expid in (1, 2, 3):
        shutil.rmtree(workdir / "raw" / str(NIGHT) / f"{expid:08d}")
    run = snakemake(workdir, "--cores", "2", "--keep-going")
    assert run.returncode != 0
    assert "no arc PSF succeeded" in run.stdout and "fallback_psf" in run.stdout
    (workdir / "fb.yaml").write_text("raw_dir: raw\ncalib_dir: calib\nredux_dir: prod\n"
                                     "psfnight:\n  fallback_psf: calib/psf-nominal-{camera}.fits\n")
    run = snakemake(workdir, "--cores", "2", configfile="fb.yaml")
    assert run.returncode == 0, run.stdout[-3000:]
    psfnight = workdir / findfile("psfnight", root="prod", night=NIGHT, camera="r0")
    assert psfnight.read_text() == "calib_psf r0\n"
    assert all(f.exists() for f in science_frames(workdir))


def test_traceshift_sky_template(workdir):
    """null: the calibration tree's spec-sky.dat when it exists; a configured path wins."""
    target = findfile("shifted_psf", root="prod", night=NIGHT, expid=6, camera="b0")
    shifted = workdir / target
    template = workdir / findfile("calib_sky_template", root="calib")
    template.write_text("3600.0 1.0\n9800.0 1.0\n")
    run = snakemake(workdir, "--cores", "2", target)
    assert run.returncode == 0, run.stdout[-3000:]
    assert shifted.read_text().splitlines()[-1] == f"sky_template {findfile('calib_sky_template', root='calib')}"
    (workdir / "sky.yaml").write_text("raw_dir: raw\ncalib_dir: calib\nredux_dir: prod\n"
                                      "traceshift:\n  sky_template: mysky.dat\n")
    run = snakemake(workdir, "--cores", "2", target, configfile="sky.yaml")   # params changed: reruns
    assert run.returncode == 0, run.stdout[-3000:]
    assert shifted.read_text().splitlines()[-1] == "sky_template mysky.dat"


def test_sidecar_records_data_failure_only(tmp_path, caplog):
    """A data error is recorded (with its reason); an environment error (ImportError, MemoryError, OSError)
    propagates and leaves no sidecar, so the job fails instead of passing for a bad arc."""
    from desired.io.util import DataModelError
    from desired.workflow_status import read_step_reason, read_step_status, run_absorbing_failure

    def bad_data(path):
        raise DataModelError(path, "truncated")

    status = tmp_path / "a.status"
    assert run_absorbing_failure(str(status), bad_data, path="x.fits") == "failed"
    assert read_step_status(str(status)) == "failed" and "x.fits: truncated" in caplog.text
    assert read_step_reason(str(status)) == "data error: x.fits: truncated"
    for error in (ModuleNotFoundError("No module named 'numba'"), MemoryError(), OSError("disk full")):
        def broken(error=error):
            raise error
        with pytest.raises(type(error)):
            run_absorbing_failure(str(status), broken)
        assert not status.exists()                       # the stale 'failed' went too
    assert run_absorbing_failure(str(status), lambda: None) == "ok"
    assert status.read_text() == "ok\n" and [p.name for p in tmp_path.iterdir()] == ["a.status"]


def test_psfnight_without_input_or_fallback_writes_nothing(tmp_path):
    from desired.scripts.psfnight import run
    out = tmp_path / "psfnight.fits"
    with pytest.raises(ValueError, match="no input PSF and no fallback"):
        run(infiles=[], outfile=str(out))
    with pytest.raises(FileNotFoundError, match="fallback PSF does not exist"):
        run(infiles=[], outfile=str(out), fallback=str(tmp_path / "missing.fits"))
    assert list(tmp_path.iterdir()) == []


UPSTREAM_OF_EXTRACT = {"exposure_table", "fibermap", "preproc", "preproc_arc", "psf", "psfnight", "traceshift"}


def test_targeted_rerun_and_new_data(workdir):
    assert snakemake(workdir, "--cores", "2").returncode == 0
    assert job_counts(snakemake(workdir, "-n").stdout) == {}           # nothing left to do
    # forcing one frame reruns only that frame (it has no dependents yet)
    cmd = [str(BIN / "desired"), "rerun", "extract_20261124_r0_00000006", "--configfile", "config.yaml",
           "--schema", str(REPO / "config" / "config.schema.yaml"), "--snakefile", str(REPO / "Snakefile"), "--dry-run"]
    rerun = subprocess.run(cmd, cwd=workdir, text=True, env=_env(workdir),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    counts = job_counts(rerun.stdout)
    # the frame and only what depends on it (its sky, the spectrograph's stdstars, fluxcalib/cframe, QA)
    assert counts.get("extract") == 1 and not set(counts) & UPSTREAM_OF_EXTRACT, rerun.stdout[-3000:]
    assert counts.get("sky") == 1 and counts.get("fiberflat") is None, counts
    # forcing one traceshift reruns it and its frame only
    shifted = findfile("shifted_psf", root="prod", night=NIGHT, expid=4, camera="b0")
    counts = job_counts(snakemake(workdir, "-n", "--forcerun", shifted).stdout)
    assert counts.get("traceshift") == 1 and counts.get("extract") == 1, counts
    assert not set(counts) & {"exposure_table", "fibermap", "preproc", "preproc_arc", "psf", "psfnight"}, counts
    # a new science exposure: only its own work runs
    _write_exposure(str(workdir / "raw"), 9, "SCIENCE")
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stdout[-3000:]
    ran = {}
    for m in re.finditer(r"^(?:rule|checkpoint|localrule|localcheckpoint) (\w+):", run.stdout, re.M):
        ran[m.group(1)] = ran.get(m.group(1), 0) + 1
    # its own pixel chain (b0, r0) and what follows from it; no calibration exposure is redone
    assert {k: ran.get(k) for k in ("exposure_table", "preproc", "traceshift", "extract")} == \
        {"exposure_table": 1, "preproc": 2, "traceshift": 2, "extract": 2}, ran
    assert not set(ran) & {"preproc_arc", "psf", "psfnight", "fiberflat", "fiberflatnight"}, ran
    assert ran.get("sky") == 2 and ran.get("cframe") == 2, ran


def test_killed_run_resumes_identically(workdir, tmp_path_factory):
    reference = tmp_path_factory.mktemp("wfref")
    for name in ("raw", "calib", "fakebin", "config.yaml"):
        src = workdir / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, reference / name)
    assert snakemake(reference, "--cores", "2").returncode == 0
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "1"]
    proc = subprocess.Popen(cmd, cwd=workdir, env=_env(workdir, FAKE_SLEEP_STEP="extract", FAKE_SLEEP="60"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    partial = None
    while time.time() < deadline and partial is None:
        partial = next((f for f in science_frames(workdir) if f.exists() and f.read_text() == "partial\n"), None)
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partial is not None, "no extract job started"
    assert partial.read_text() == "partial\n"                         # a half-written output was left behind
    assert snakemake(workdir, "--unlock").returncode == 0
    resumed = snakemake(workdir, "--cores", "2", "--rerun-incomplete")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    for f in science_frames(workdir):
        assert f.read_bytes() == (reference / f.relative_to(workdir)).read_bytes(), f


# ------------------------------------------------------------------ the real steps
def _steps_exist(*modules):
    return all(importlib.util.find_spec(f"desired.scripts.{m}") is not None for m in modules)


@pytest.mark.slow
@pytest.mark.skipif(not _steps_exist("simulate", "preproc", "psf", "psfnight", "traceshift", "extract"),
                    reason="a pipeline step the workflow calls (simulate/psf/psfnight/traceshift/extract) is not implemented yet")
def test_real_tiny_night(tmp_path):
    """The real steps end to end on a simulated tiny night (raw_dir null: the workflow simulates)."""
    (tmp_path / "config.yaml").write_text(
        "simulate:\n  preset: tiny\n  night: 20261124\n  narc: 2\n  nflat: 1\n  nscience: 1\n")
    env = dict(os.environ, PATH=PLAIN_PATH)
    run = subprocess.run([SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                          "--configfile", str(tmp_path / "config.yaml"), "--cores", "2"], cwd=tmp_path,
                         env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    assert run.returncode == 0, run.stdout[-5000:]
    table = read_exposure_table(str(tmp_path / findfile("exposure_table", root="prod", night=NIGHT)))
    frames = [tmp_path / findfile("frame", root="prod", night=NIGHT, expid=r["EXPID"], camera=c)
              for r in table if r["OBSTYPE"] in ("FLAT", "SCIENCE") for c in r["CAMERAS"]]
    assert frames and all(f.exists() for f in frames)
    from desired.io.frame import read_frame
    fr = read_frame(str(frames[-1]))
    assert np.isfinite(fr.flux).all() and (fr.ivar > 0).any()


# ------------------------------------------------------------------ operator-facing errors (issue 11)
def test_slurm_dry_run_prints_the_srun_command(workdir):
    dry = snakemake(workdir, "-n", "-p", "--profile", str(REPO / "profiles" / "slurm"))
    assert dry.returncode == 0, dry.stdout[-3000:]
    extract = [line for line in dry.stdout.splitlines() if " -m desired extract " in line]
    assert extract and all(re.search(r"srun -N 1 -n 2 \S+python\S* -m desired extract .* --mpi", line) for line in extract)
    assert re.search(r"srun -N 1 -n 2 \S+ -m desired psf .* --mpi", dry.stdout)


def _desired(workdir, *args):
    """The real `desired` (no stand-in steps), from a shell with nothing on PATH."""
    env = dict(os.environ, PATH=PLAIN_PATH)
    return subprocess.run([str(BIN / "desired"), *args], cwd=workdir, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _one_line_error(out):
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    return out.returncode != 0 and len(lines) == 1 and "Traceback" not in out.stdout


def test_cli_errors_are_one_line(workdir):
    assert _desired(workdir, "status", "--configfile", "config.yaml").returncode == 0   # schema found without --schema
    for args in (("status", "--configfile", "config.yaml", "--task", "bogus"),
                 ("status", "--configfile", "config.yaml", "--tasks", "bogus"),
                 ("rerun", "bogus_1", "--configfile", "config.yaml"),
                 ("extract", "--image", "missing.fits", "--psf", "missing.fits", "--outfile", "x.fits")):
        out = _desired(workdir, *args)
        assert _one_line_error(out), (args, out.returncode, out.stdout)
    # a misspelled top-level key: one short message, not the schema
    (workdir / "typo.yaml").write_text("raw_dir: raw\ncalib_dir: calib\nredux_dirr: prod\n")
    out = _desired(workdir, "status", "--configfile", "typo.yaml")
    assert _one_line_error(out) and "redux_dirr" in out.stdout, out.stdout
    run = snakemake(workdir, "-n", configfile="typo.yaml")
    assert run.returncode != 0 and "redux_dirr" in run.stdout and len(run.stdout.splitlines()) < 10, run.stdout
    # --mpi without mpi4py: one line saying what to install
    (workdir / "nompi").mkdir()
    (workdir / "nompi" / "mpi4py.py").write_text("raise ModuleNotFoundError(\"No module named 'mpi4py'\", name='mpi4py')\n")
    env = dict(os.environ, PATH=PLAIN_PATH)
    env["PYTHONPATH"] = os.pathsep.join([str(workdir / "nompi")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    out = subprocess.run([str(BIN / "desired"), "extract", "--image", "a.fits", "--psf", "b.fits", "--outfile", "c.fits",
                          "--mpi"], cwd=workdir, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert _one_line_error(out) and "mpi4py" in out.stdout and "pip install" in out.stdout, out.stdout
    # the traceback is there with --log-level DEBUG
    out = _desired(workdir, "--log-level", "DEBUG", "rerun", "bogus_1", "--configfile", "config.yaml")
    assert out.returncode != 0 and "Traceback" in out.stdout


def test_status_lists_failed_tasks_and_names(workdir):
    """A science raw file goes bad after a finished run: its check fails visibly, its old products go,
    the rest of the night stays done; `status --failed` / `--tasks` name the tasks."""
    assert snakemake(workdir, "--cores", "2").returncode == 0
    raw = workdir / findfile("raw", root="raw", night=NIGHT, expid=6)
    raw.write_bytes(raw.read_bytes()[:3000])
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode != 0 and "check_raw_20261124_00000006" in run.stdout, run.stdout[-3000:]
    assert not frame(workdir, 6, "b0").exists() and not frame(workdir, 6, "r0").exists()
    assert all(f.exists() for f in science_frames(workdir) if "00000006" not in f.name)
    failed = _desired(workdir, "status", "--configfile", "config.yaml", "--failed")
    assert failed.returncode == 0 and failed.stdout.startswith("check_raw_20261124_00000006: unreadable raw file"), \
        failed.stdout
    names = _desired(workdir, "status", "--configfile", "config.yaml", "--tasks", "extract").stdout
    assert names.splitlines()[0] == "done (6):" and "  extract_20261124_r0_00000007" in names, names
    table = read_exposure_table(str(workdir / findfile("exposure_table", root="prod", night=NIGHT)))
    assert [r["LASTSTEP"] for r in table if r["EXPID"] == 6] == ["ignore"]


def test_fault_injection_data_vs_environment(workdir, tmp_path_factory):
    """Faults injected into five jobs of one run: data errors of an arc are absorbed and recorded, every
    other failure (data error elsewhere, missing module, SIGKILL) fails its job and blocks only its
    dependents; status names each failure; a clean rerun makes every product as an undisturbed run."""
    reference = tmp_path_factory.mktemp("wfref_faults")
    for name in ("raw", "calib", "fakebin", "config.yaml"):
        src = workdir / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, reference / name)
    assert snakemake(reference, "--cores", "2").returncode == 0
    faults = ("preproc:preproc-b0-00000001:data,psf:psf-r0-00000003:import,traceshift:shifted-psf-b0-00000004:data,"
              "extract:frame-b0-00000005:import,preproc:preproc-b0-00000006:kill")
    run = snakemake(workdir, "--cores", "2", "--keep-going", env=_env(workdir, FAKE_FAULT=faults))
    assert run.returncode != 0
    psf_b0 = workdir / sidecar_path(findfile("psf", root="prod", night=NIGHT, expid=1, camera="b0"))
    assert psf_b0.read_text().startswith("failed\npreproc of this arc failed: data error")      # absorbed
    assert not (workdir / sidecar_path(findfile("psf", root="prod", night=NIGHT, expid=3, camera="r0"))).exists()
    psfnight_b0 = (workdir / findfile("psfnight", root="prod", night=NIGHT, camera="b0")).read_text()
    assert "dropped psf-b0-00000001.fits" in psfnight_b0
    assert not (workdir / findfile("psfnight", root="prod", night=NIGHT, camera="r0")).exists()  # not without arc 3
    present = {f.name for f in science_frames(workdir) if f.exists()}
    assert present == {"frame-b0-00000007.fits"}, present
    failed = _desired(workdir, "status", "--configfile", "config.yaml", "--failed").stdout
    lines = dict(line.split(": ", 1) for line in failed.splitlines())
    assert "injected_missing_module" in lines["psf_20261124_r0_00000003"], failed
    assert "injected data error" in lines["traceshift_20261124_b0_00000004"], failed
    assert "injected_missing_module" in lines["extract_20261124_b0_00000005"], failed
    assert "preproc_20261124_b0_00000006" in lines and "psf_20261124_b0_00000001" in lines, failed
    clean = snakemake(workdir, "--cores", "2")
    assert clean.returncode == 0, clean.stdout[-3000:]
    # the absorbed arc stays absorbed (its data did not change) until it is rerun on purpose
    assert "dropped" in (workdir / findfile("psfnight", root="prod", night=NIGHT, camera="b0")).read_text()
    arc = sidecar_path(findfile("preproc", root="prod", night=NIGHT, expid=1, camera="b0"))
    clean = snakemake(workdir, "--cores", "2", "--forcerun", arc)
    assert clean.returncode == 0, clean.stdout[-3000:]
    for f in science_frames(workdir):
        assert f.read_bytes() == (reference / f.relative_to(workdir)).read_bytes(), f


def test_sky_data_error_fails_only_its_exposure(workdir):
    """A science camera whose sky fails with a data error (e.g. no sky fiber: desired sky exits
    EXIT_DATA_ERROR naming the camera, tests/test_sky.py) fails its own sky job and what needs it (that
    spectrograph's stdstars, fluxcalib and cframes of that exposure); with --keep-going the rest of the
    night (the other science exposure's cframes) completes, and status names the failed task."""
    run = snakemake(workdir, "--cores", "2", "--keep-going", env=_env(workdir, FAKE_FAULT="sky:sky-r0-00000006:data"))
    assert run.returncode != 0
    cframe = lambda e, c: workdir / findfile("cframe", root="prod", night=NIGHT, expid=e, camera=c)  # noqa: E731
    assert not (workdir / findfile("sky", root="prod", night=NIGHT, expid=6, camera="r0")).exists()
    assert (workdir / findfile("sky", root="prod", night=NIGHT, expid=6, camera="b0")).exists()
    assert not any(cframe(6, c).exists() for c in CAMERAS)
    assert all(cframe(7, c).exists() for c in CAMERAS), run.stdout[-3000:]
    failed = _desired(workdir, "status", "--configfile", "config.yaml", "--failed").stdout
    assert "sky_20261124_r0_00000006" in failed and "injected data error" in failed, failed
