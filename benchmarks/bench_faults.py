"""Fault injection: what an operator sees when one job of a night fails, per step and kind of failure.

A simulated night (default: ``tiny`` preset, 2 arcs, 1 flat, 1 science) is
processed once by the real workflow (the reference).  Then, for every step and
for a data error (the library's DataModelError), an environment error (a
missing module) and, for the MPI steps, a SIGKILL (what the out-of-memory
killer does), the production is restored from the reference and one task is
rerun with ``desired rerun TASK`` while tests/faults/sitecustomize.py makes that
task's job fail.  Everything runs as a user would: absolute ``.venv/bin`` paths,
``PATH=/usr/bin:/bin``.

For each case the script records the exit status of the run, the step's row of
``desired status`` (done/ready/waiting/running/failed), how the failure was
recorded (a ``failed`` sidecar = absorbed as bad data, or a failed job), the
line ``desired status --failed`` shows, which products were removed as
untrusted, and whether every other product is identical (arrays and headers,
dates aside) to the reference.  It prints one table row per case.

Usage::

    .venv/bin/python benchmarks/bench_faults.py [--workdir DIR] [--preset tiny] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fitsio
import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAULTS = REPO / "tests" / "faults"
NIGHT = 20261124
PLAIN_PATH = "/usr/bin:/bin"


def env(fault=None):
    out = dict(os.environ, PATH=PLAIN_PATH)
    out.pop("VIRTUAL_ENV", None)
    if fault:
        out["PYTHONPATH"] = os.pathsep.join([str(FAULTS)] + ([out["PYTHONPATH"]] if out.get("PYTHONPATH") else []))
        out["DESIRED_FAULT"] = fault
    return out


def call(cmd, cwd, fault=None):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env(fault), text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)


def snakemake(work, *args, fault=None):
    return call([BIN / "snakemake", "--snakefile", REPO / "Snakefile", "--directory", work,
                 "--configfile", work / "config.yaml", "--cores", "2", *args], work, fault)


def desired(work, *args, fault=None):
    return call([BIN / "desired", *args], work, fault)


def fits_content(path):
    out = []
    with fitsio.FITS(str(path)) as fits:
        for hdu in fits:
            hdr = hdu.read_header()
            header = {k: hdr[k] for k in hdr.keys() if "DATE" not in k}
            out.append((header, hdu.read() if hdu.has_data() else None))
    return out


def same(a, b):
    if a.suffix != ".fits":
        return a.read_bytes() == b.read_bytes()
    left, right = fits_content(a), fits_content(b)
    return len(left) == len(right) and all(
        ha == hb and ((da is None and db is None) or (da is not None and db is not None
                                                      and np.array_equal(np.asarray(da), np.asarray(db))))
        for (ha, da), (hb, db) in zip(left, right))


def product_files(prod):
    return {p.relative_to(prod): p for p in prod.rglob("*")
            if p.is_file() and p.parts[len(prod.parts)] not in ("logs", "benchmarks")}


def status_row(work, step):
    out = desired(work, "status", "--configfile", "config.yaml").stdout
    for line in out.splitlines():
        if line.split()[:1] == [step]:
            return "/".join(line.split()[1:6])
    return "-"


def cases(table):
    """(step, task name, output substring, fault step) of one job per step of the reference night."""
    arcs = [r for r in table if r["OBSTYPE"] == "ARC"]
    sci = [r for r in table if r["OBSTYPE"] == "SCIENCE"][0]
    cam = sci["CAMERAS"][0]
    a, s = f"{arcs[0]['EXPID']:08d}", f"{sci['EXPID']:08d}"
    out = [("exposure_table", f"exposure_table_{NIGHT}", f"exposure_table_{NIGHT}", "exposure_table"),
           ("preproc (arc)", f"preproc_{NIGHT}_{cam}_{a}", f"preproc-{cam}-{a}", "preproc"),
           ("psf", f"psf_{NIGHT}_{cam}_{a}", f"psf-{cam}-{a}", "psf"),
           ("psfnight", f"psfnight_{NIGHT}_{cam}", f"psfnight-{cam}", "psfnight"),
           ("preproc", f"preproc_{NIGHT}_{cam}_{s}", f"preproc-{cam}-{s}", "preproc"),
           ("traceshift", f"traceshift_{NIGHT}_{cam}_{s}", f"shifted-psf-{cam}-{s}", "traceshift"),
           ("extract", f"extract_{NIGHT}_{cam}_{s}", f"frame-{cam}-{s}", "extract")]
    return out


def downstream(table, task):
    """Product paths (relative to prod) of ``task`` and of every task downstream of it."""
    from desired.workflow_status import expected_tasks, production_roots
    roots = production_roots({"raw_dir": None, "redux_dir": "prod", "sim_dir": "sim"})
    tasks = expected_tasks(table, roots)
    hit = {os.path.normpath(t["output"]) for t in tasks if t["name"] == task}
    for t in tasks:
        if any(os.path.normpath(p) in hit for p in t["inputs"]):
            hit.add(os.path.normpath(t["output"]))
    hit |= {p[:-len(".status")] + ".fits" for p in hit if p.endswith(".status")}
    return {Path(os.path.relpath(p, "prod")) for p in hit}


def recorded(work, task):
    from desired.workflow_status import parse_task_name, production_roots, task_output
    step, fields = parse_task_name(task)
    roots = production_roots({"raw_dir": None, "redux_dir": "prod", "sim_dir": "sim"})
    for obstype in ("ARC", None):
        output = work / task_output(step, fields, roots, obstype)
        if str(output).endswith(".status") and output.exists():
            return "sidecar: " + output.read_text().split()[0]
    return "failed job"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="where to work (default: a temporary directory)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--boxcar", action="store_true", help="boxcar extraction (faster; the workflow is measured)")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_faults-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(f"simulate:\n  preset: {args.preset}\n  night: {NIGHT}\n"
                                      "  narc: 2\n  nflat: 1\n  nscience: 1\n"
                                      + ("extract:\n  boxcar: true\n" if args.boxcar else ""))
    start = time.time()
    base = snakemake(work)
    if base.returncode != 0:
        sys.exit("reference run failed:\n" + base.stdout[-4000:])
    print(f"reference run: {time.time() - start:.0f} s", flush=True)
    snapshot = work / "snapshot"
    shutil.rmtree(snapshot, ignore_errors=True)
    snapshot.mkdir()
    for name in ("prod", ".snakemake"):
        shutil.copytree(work / name, snapshot / name, symlinks=True)
    reference = product_files(snapshot / "prod")
    from desired.exposures import read_exposure_table
    from desired.paths import findfile
    table = read_exposure_table(str(work / findfile("exposure_table", root="prod", night=NIGHT)))

    rows = []
    for step, task, sub, fstep in cases(table):
        kinds = ["data", "import"] + (["kill"] if fstep in ("psf", "extract") else [])
        for kind in kinds:
            for name in ("prod", ".snakemake"):
                shutil.rmtree(work / name, ignore_errors=True)
                shutil.copytree(snapshot / name, work / name, symlinks=True)
            t0 = time.time()
            run = desired(work, "rerun", task, "--configfile", "config.yaml", "--snakefile", REPO / "Snakefile",
                          "--cores", "2", fault=f"{fstep}:{sub}:{kind}")
            failed = desired(work, "status", "--configfile", "config.yaml", "--failed").stdout.strip()
            line = next((ln for ln in failed.splitlines() if ln.startswith(task)), failed.splitlines()[0])
            now = product_files(work / "prod")
            affected = downstream(table, task)
            missing = sorted(str(p) for p in reference if p not in now)
            differ = sorted(str(p) for p in reference if p in now and p not in affected
                            and not same(reference[p], now[p]))
            changed = sorted(str(p) for p in reference if p in now and p in affected
                             and not same(reference[p], now[p]))
            rows.append((step, kind, run.returncode, status_row(work, task.split("_2026")[0]),
                         recorded(work, task), line.split(": ", 1)[-1][:90], len(missing),
                         "yes" if not differ else f"NO: {differ}", time.time() - t0, missing + [f"changed {c}" for c in changed]))
            print(f"{step:15s} {kind:6s} exit {run.returncode:3d}  {rows[-1][3]:12s} {rows[-1][4]:16s} "
                  f"removed {len(missing)}  others identical: {rows[-1][7]}  ({rows[-1][8]:.0f} s)", flush=True)

    print("\n| step | fault | exit | status row (done/ready/waiting/running/failed) | recorded as | "
          "`desired status --failed` line | products removed | products outside the faulted task's downstream identical |")
    print("|---|---|---|---|---|---|---|---|")
    for step, kind, rc, row, rec, line, nmiss, ident, _, missing in rows:
        print(f"| {step} | {kind} | {rc} | {row} | {rec} | {line} | {nmiss} | {ident} |")
    print("\nper case:")
    for step, kind, *_, missing in rows:
        gone = [os.path.basename(m) for m in missing if not m.startswith("changed ")]
        rebuilt = [os.path.basename(m[len("changed "):]) for m in missing if m.startswith("changed ")]
        print(f"  {step} {kind}: removed {', '.join(gone) or '-'}; rebuilt differently (downstream of an "
              f"absorbed arc) {', '.join(rebuilt) or '-'}")
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
