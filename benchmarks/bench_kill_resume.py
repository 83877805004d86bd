"""Kill anywhere, resume: SIGKILL the running production at random moments, resume, compare.

Simulates one night once (default: the ``tiny`` preset, 2 arcs, 1 flat, 1
science), runs the production uninterrupted (``snakemake --profile
profiles/local``) as the reference, then runs it again in fresh production
directories, killing Snakemake and every job it started (SIGKILL to the whole
process group) at random moments (seeded: uniform between 0.5 s and the
reference's wall time after each start) and resuming each time with
``snakemake --unlock`` + ``snakemake --rerun-incomplete``, until at least
``--kills`` kills have happened and the production has finished.  Every
product of the reference (everything under the production directory but logs/
and benchmarks/) is then compared with the killed-and-resumed one:
byte-identical, or, for FITS files whose bytes differ, identical HDUs (names,
data arrays, and headers but for DATE/CHECKSUM/DATASUM).  Leftover temporary
files (``.tmp-*`` of desired.io.util.atomic_path) are counted, never compared.

Usage::

    python benchmarks/bench_kill_resume.py [--kills 10] [--seed 0] [--preset tiny] [--outdir DIR]

The last line reads ``kills K productions P products N compared: B byte-identical,
A identical arrays, D differences, M missing, F failed resumes`` (a resumed run that
fails is reported with its error lines and its production compared as it stands).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from workflow_runs import environment, new_production, simulate, snakemake_command

VOLATILE = {"DATE", "CHECKSUM", "DATASUM"}


def command(workdir, cores, *extra):
    return snakemake_command(workdir, "local", "--cores", str(cores), *extra)


def run_once(workdir, cores, kill_after=None):
    """Start the production; SIGKILL its process group after kill_after s unless it ends first.

    Returns (killed, return code or None, rules running at the kill)."""
    out = open(workdir / "snakemake.out", "a")
    out.write(f"\n===== start {time.strftime('%H:%M:%S')} kill_after={kill_after}\n")
    out.flush()
    proc = subprocess.Popen(command(workdir, cores), cwd=workdir, env=environment(), text=True,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = proc.wait(timeout=kill_after)
        out.close()
        return False, code, []
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        out.write("\n===== SIGKILL\n")
        out.close()
        # the rules started since this start and not finished: "rule X:" blocks after the last start marker
        text = (workdir / "snakemake.out").read_text().rsplit("===== start", 1)[-1]
        started = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):\n(?:.*\n)*?\s+jobid: (\d+)", text, re.M)
        done = set(re.findall(r"Finished jobid: (\d+)", text))
        return True, None, sorted({rule for rule, jobid in started if jobid not in done})


def unlock(workdir, cores):
    subprocess.run(command(workdir, cores, "--unlock"), cwd=workdir, env=environment(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def products(workdir):
    """({relative path: path} of every product, [leftover temporary files]); logs and
    benchmarks are left out."""
    prod = workdir / "prod"
    out, tmp = {}, []
    for path in prod.rglob("*"):
        rel = path.relative_to(prod)
        if not path.is_file() or rel.parts[0] in ("logs", "benchmarks"):
            continue
        if path.name.startswith(".tmp-"):
            tmp.append(path)
        else:
            out[str(rel)] = path
    return out, tmp


def compare_fits(a, b):
    """'' when both FITS files hold the same HDUs, arrays and non-volatile header cards, else why not."""
    import fitsio
    with fitsio.FITS(a) as fa, fitsio.FITS(b) as fb:
        if len(fa) != len(fb):
            return f"{len(fa)} vs {len(fb)} HDUs"
        for i in range(len(fa)):
            ha, hb = fa[i].read_header(), fb[i].read_header()
            ka = {k: ha[k] for k in ha.keys() if k not in VOLATILE}
            kb = {k: hb[k] for k in hb.keys() if k not in VOLATILE}
            if ka != kb:
                diff = sorted(k for k in set(ka) | set(kb) if ka.get(k) != kb.get(k))
                return f"HDU {i} header differs in {diff[:5]}"
            if fa[i].has_data() != fb[i].has_data():
                return f"HDU {i}: data in one file only"
            if fa[i].has_data():
                da, db = fa[i].read(), fb[i].read()
                if da.dtype != db.dtype or da.shape != db.shape:
                    return f"HDU {i}: {da.dtype}{da.shape} vs {db.dtype}{db.shape}"
                if da.dtype.names:
                    same = all(np.array_equal(da[n], db[n]) for n in da.dtype.names)
                else:
                    same = np.array_equal(da, db, equal_nan=da.dtype.kind == "f")
                if not same:
                    return f"HDU {i} ({ha.get('EXTNAME', '')}): data differ"
    return ""


def compare(reference, other):
    """Counts (byte-identical, identical arrays, differences, missing, extra) and the list of problems."""
    ref, _ = products(reference)
    got, _ = products(other)
    counts = dict(bytes=0, arrays=0, differ=0, missing=0, extra=len(set(got) - set(ref)))
    problems = [f"extra: {p}" for p in sorted(set(got) - set(ref))]
    for rel, path in sorted(ref.items()):
        if rel not in got:
            counts["missing"] += 1
            problems.append(f"missing: {rel}")
        elif path.read_bytes() == got[rel].read_bytes():
            counts["bytes"] += 1
        elif ".fits" in path.name:
            why = compare_fits(path, got[rel])
            if why:
                counts["differ"] += 1
                problems.append(f"{rel}: {why}")
            else:
                counts["arrays"] += 1
        else:
            counts["differ"] += 1
            problems.append(f"{rel}: bytes differ")
    return counts, problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "mini", "petal"])
    parser.add_argument("--narc", type=int, default=2)
    parser.add_argument("--nflat", type=int, default=1)
    parser.add_argument("--nscience", type=int, default=1)
    parser.add_argument("--kills", type=int, default=10, help="kill at least this many times")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--outdir", help="keep the productions here (default: a temporary directory)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory(prefix="bench_kill_", dir=args.outdir) as tmp:
        root = Path(args.outdir or tmp).resolve() / f"run{os.getpid()}"
        raw, calib = simulate(root / "sim", args.preset, args.narc, args.nflat, args.nscience)
        reference = root / "reference"
        new_production(reference, raw, calib)
        start = time.perf_counter()
        _, code, _ = run_once(reference, args.cores)
        t_ref = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"the uninterrupted run failed, see {reference / 'snakemake.out'}")
        print(f"uninterrupted run: {t_ref:.0f} s", flush=True)

        kills, nprod, total = 0, 0, dict(bytes=0, arrays=0, differ=0, missing=0, extra=0)
        leftovers, failed = 0, 0
        while kills < args.kills:
            nprod += 1
            workdir = root / f"killed{nprod}"
            new_production(workdir, raw, calib)
            runs = 0
            while True:
                if runs:
                    unlock(workdir, args.cores)
                runs += 1
                moment = float(rng.uniform(0.5, t_ref)) if kills < args.kills else None
                killed, code, running = run_once(workdir, args.cores, moment)
                if not killed:
                    if code != 0:
                        # a resume that fails is a finding: report it, compare what exists, go on
                        failed += 1
                        errors = re.findall(r"^(?:Error in rule \w+|\w*Error: .*)$",
                                            (workdir / "snakemake.out").read_text(), re.M)
                        print(f"production {nprod}: resumed run {runs} FAILED ({code}): "
                              f"{'; '.join(dict.fromkeys(errors))[:400]} (see {workdir / 'snakemake.out'})",
                              flush=True)
                    break
                kills += 1
                print(f"kill {kills}: production {nprod}, run {runs}, at {moment:.1f} s, "
                      f"running: {', '.join(running) or 'none (DAG building)'}", flush=True)
            counts, problems = compare(reference, workdir)
            leftovers += len(products(workdir)[1])
            for key in total:
                total[key] += counts[key]
            print(f"production {nprod}: {runs} runs; {counts}", flush=True)
            for line in problems:
                print("   ", line, flush=True)
        compared = total["bytes"] + total["arrays"] + total["differ"] + total["missing"]
        print(f"leftover temporary files (never used as products): {leftovers}")
        print(f"kills {kills} productions {nprod} products {compared} compared: {total['bytes']} byte-identical, "
              f"{total['arrays']} identical arrays, {total['differ']} differences, {total['missing']} missing"
              + (f", {total['extra']} extra" if total["extra"] else "") + f", {failed} failed resumes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
