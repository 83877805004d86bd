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

FAKE_DESIRED = textwrap.dedent('''\
    #!{python}
    """Stand-in for `desired` used by tests/test_workflow.py (see its docstring)."""
    import os, sys, time
    argv = sys.argv[1:]
    log = None
    if argv[:1] == ["--log-file"]:
        log, argv = argv[1], argv[2:]
    step = argv[0]
    if step in ("exposure-table", "fibermap", "status", "rerun"):
        from desired.cli import main
        sys.exit(main(sys.argv[1:]))
    opts, key = {{}}, None
    for a in argv[1:]:
        if a.startswith("--"):
            key = a[2:]
            opts.setdefault(key, [])
        elif key:
            opts[key].append(a)
    def fail(msg):
        if log:
            open(log, "a").write(msg + "\\n")
        sys.stderr.write(msg + "\\n")
        sys.exit(1)
    if step == "preproc":
        from desired.io.raw import read_raw_camera
        try:
            read_raw_camera(opts["infile"][0], opts["camera"][0])
        except Exception as err:
            fail(f"preproc: {{err}}")
    inputs = sorted(sum((opts.get(k, []) for k in ("infile", "infiles", "image", "psf", "input-psf", "fibermap")), []))
    out = opts["outfile"][0]
    if log:
        open(log, "w").write(f"{{step}} inputs {{inputs}}\\n")
    with open(out, "w") as fh:
        fh.write("partial\\n")
    if os.environ.get("FAKE_SLEEP_STEP") == step:
        time.sleep(float(os.environ.get("FAKE_SLEEP", "30")))
    with open(out, "w") as fh:
        fh.write(step + "\\n" + "\\n".join(inputs) + "\\n")
''')


#: stand-ins of the library steps the script rules' adapters call (imported at interpreter start)
FAKE_STEPS = textwrap.dedent('''\
    """Stand-in steps used by tests/test_workflow.py (see its docstring)."""
    import os, time
    import desired.scripts.preproc, desired.scripts.psfnight, desired.scripts.traceshift

    def _write(step, outfile, inputs, extra=""):
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

    def combine_files(infiles, outfile, nsig=4.0):
        _write("psfnight", outfile, infiles)

    def traceshift(image, psf, outfile, sky_template=None, **options):
        _write("traceshift", outfile, [image, psf], extra=f"sky_template {sky_template}\\n")

    desired.scripts.preproc.run = preproc
    desired.scripts.psfnight.combine_files = combine_files
    desired.scripts.traceshift.run = traceshift

    # calibration stand-ins (rules/calib.smk)
    import desired.scripts.fiberflat, desired.scripts.fiberflatnight, desired.scripts.sky
    desired.scripts.fiberflat.run = lambda infile, outfile, **kw: _write("fiberflat", outfile, [infile])
    desired.scripts.fiberflatnight.run = lambda infiles, outfile, **kw: _write("fiberflatnight", outfile, infiles)
    desired.scripts.sky.run = lambda infile, fiberflat, outfile, **kw: _write("sky", outfile, [infile, fiberflat])
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
    """A fresh production directory: copy of the raw/calib tree, config with relative paths, fake desired."""
    shutil.copytree(source_tree / "raw", tmp_path / "raw")
    shutil.copytree(source_tree / "calib", tmp_path / "calib")
    (tmp_path / "config.yaml").write_text("raw_dir: raw\ncalib_dir: calib\nredux_dir: prod\n")
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    fake = fakebin / "desired"
    fake.write_text(FAKE_DESIRED.format(python=sys.executable))
    fake.chmod(0o755)
    (fakebin / "sitecustomize.py").write_text(FAKE_STEPS)
    return tmp_path


def _env(workdir, **extra):
    env = dict(os.environ)
    env["PATH"] = f"{workdir / 'fakebin'}{os.pathsep}{BIN}{os.pathsep}{env['PATH']}"
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
    for bad in ("extract_20261124_00000012", "bogus_20261124", "preproc_2026112_b0_00000001"):
        with pytest.raises(ValueError):
            parse_task_name(bad)


# ------------------------------------------------------------------ DAG, lint, schema
def test_dry_run_lists_every_step(workdir):
    # the exposure table is a checkpoint: build it, then the dry run knows every job
    table = findfile("exposure_table", root="prod", night=NIGHT)
    run = snakemake(workdir, "--cores", "1", table)
    assert run.returncode == 0, run.stdout[-3000:]
    dry = snakemake(workdir, "-n")
    assert dry.returncode == 0, dry.stdout[-3000:]
    counts = job_counts(dry.stdout)
    assert counts == {"preproc": 8, "preproc_arc": 6, "psf": 6, "psfnight": 2, "traceshift": 8,
                      "extract": 8, "fiberflat": 4, "fiberflatnight": 2, "sky": 4, "all": 1}, counts


def test_dry_run_default_config_simulates(tmp_path):
    """With raw_dir null the default config simulates its night first (checkpointed DAG)."""
    dry = subprocess.run([SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                          "--configfile", str(REPO / "config" / "config.yaml"), "-n"],
                         cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"))
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
        if name in ("psf", "extract"):
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


def test_failure_isolation_keep_going(workdir):
    _write_exposure(str(workdir / "raw"), 2, "ARC", bad=True)        # one arc unreadable: every camera
    run = snakemake(workdir, "--cores", "2", "--keep-going")
    assert run.returncode == 0, run.stdout[-4000:]                   # the arc chain absorbs its failure
    for cam in CAMERAS:
        status = sidecar_path(str(workdir / findfile("psf", root="prod", night=NIGHT, expid=2, camera=cam)))
        assert open(status).read().strip() == "failed"
        psfnight = workdir / findfile("psfnight", root="prod", night=NIGHT, camera=cam)
        used = psfnight.read_text().splitlines()[1:]
        assert sorted(os.path.basename(p) for p in used) == [f"psf-{cam}-00000001.fits", f"psf-{cam}-00000003.fits"]
        # the adapter logged the absorbed failure with its traceback and left no image behind
        arc = {"night": NIGHT, "expid": 2, "camera": cam}
        assert open(sidecar_path(str(workdir / findfile("preproc", root="prod", **arc)))).read() == "failed\n"
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


def test_sidecar_records_failure_without_raising(tmp_path, caplog):
    from desired.workflow_status import read_step_status, run_absorbing_failure

    def broken(path):
        raise OSError(f"{path}: unreadable")

    status = tmp_path / "a.status"
    assert run_absorbing_failure(str(status), broken, path="x.fits") == "failed"
    assert read_step_status(str(status)) == "failed" and "x.fits: unreadable" in caplog.text
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


def test_targeted_rerun_and_new_data(workdir):
    assert snakemake(workdir, "--cores", "2").returncode == 0
    assert job_counts(snakemake(workdir, "-n").stdout) == {}           # nothing left to do
    # forcing one frame reruns only that frame (it has no dependents yet)
    cmd = [str(BIN / "desired"), "rerun", "extract_20261124_r0_00000006", "--configfile", "config.yaml",
           "--schema", str(REPO / "config" / "config.schema.yaml"), "--snakefile", str(REPO / "Snakefile"), "--dry-run"]
    rerun = subprocess.run(cmd, cwd=workdir, text=True, env=_env(workdir),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert job_counts(rerun.stdout) == {"extract": 1, "all": 1}, rerun.stdout[-3000:]
    # forcing one traceshift reruns it and its frame only
    shifted = findfile("shifted_psf", root="prod", night=NIGHT, expid=4, camera="b0")
    assert job_counts(snakemake(workdir, "-n", "--forcerun", shifted).stdout) == \
        {"traceshift": 1, "extract": 1, "all": 1}
    # a new science exposure: only its own work runs
    _write_exposure(str(workdir / "raw"), 9, "SCIENCE")
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stdout[-3000:]
    ran = {}
    for m in re.finditer(r"^(?:rule|checkpoint|localrule|localcheckpoint) (\w+):", run.stdout, re.M):
        ran[m.group(1)] = ran.get(m.group(1), 0) + 1
    assert ran == {"exposure_table": 1, "preproc": 2, "traceshift": 2, "extract": 2, "all": 1}, ran


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
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
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
