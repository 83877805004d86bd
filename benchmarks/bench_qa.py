"""Time the QA report of a processed production against the production's own run time.

Run after ``make run`` (the default simulated night processed into ``prod/``)::

    python benchmarks/bench_qa.py [--configfile config/config.yaml] [--directory .] [--repeat 2]

The production's run time is the sum of the wall times of its jobs (Snakemake
``benchmark:`` files under ``{redux}/benchmarks``, QA jobs excluded); the report
is built in this process for every night (figures and pages into a temporary
directory) with wall and CPU time.  Prints both and their ratio (the target is
below 10 %).  With the simulator's truth tree it also prints the exposure-qa
metrics that have a truth (read noise per amplifier, trace shifts) beside it.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def production_time(redux):
    """Sums of the job wall and CPU times (s) in the benchmark tsv files, QA jobs excluded; the job count."""
    total, cpu, njobs = 0.0, 0.0, 0
    for path in glob.glob(os.path.join(redux, "benchmarks", "*", "*", "*.tsv")):
        if os.path.basename(os.path.dirname(os.path.dirname(path))).startswith("qa_"):
            continue
        with open(path) as fh:
            lines = fh.read().splitlines()
        if len(lines) >= 2:
            columns = dict(zip(lines[0].split("\t"), lines[1].split("\t")))
            total += float(columns["s"])
            cpu += float(columns.get("cpu_time", "nan"))
            njobs += 1
    return total, cpu, njobs


def truth_comparison(roots, config):
    """Print READNOISE_x and TRSHIFT_X/Y of every exposure-qa file beside the simulator's truth."""
    import fitsio
    import yaml
    from desired import paths
    from desired.io.qa import read_exposure_qa
    from desired.qa.report import list_exposures, list_nights
    for night in list_nights(roots["redux"]):
        for expid in list_exposures(roots["redux"], night):
            qa_file = paths.findfile("qa_exposure", root=roots["redux"], night=night, expid=expid)
            truth_file = paths.findfile("truth", root=roots["truth"], night=night, expid=expid)
            if not (os.path.exists(qa_file) and os.path.exists(truth_file)):
                continue
            qa = read_exposure_qa(qa_file)
            shifts = {r["CAMERA"].strip().lower(): (r["DX"], r["DY"]) for r in fitsio.read(truth_file, "TRACESHIFT")}
            for cam, m in sorted(qa.metrics.items()):
                ccd = yaml.safe_load(open(paths.findfile("truth_ccd", root=roots["truth"], camera=cam)))
                rn = " ".join(f"{a} {m[f'READNOISE_{a}']:.3f}/{v['readnoise']:.3f}"
                              for a, v in ccd["amplifiers"].items() if f"READNOISE_{a}" in m)
                line = f"{night} {expid:08d} {cam}: read noise measured/true e- {rn}"
                if "TRSHIFT_X" in m and cam in shifts:
                    line += (f"; shift x {m['TRSHIFT_X']:+.3f}/{shifts[cam][0]:+.3f}"
                             f" y {m['TRSHIFT_Y']:+.3f}/{shifts[cam][1]:+.3f} px")
                print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--directory", default=".")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from desired.scripts.qa import run
    from desired.workflow_status import load_config, production_roots
    schema = os.path.join(os.path.dirname(os.path.abspath(args.configfile)), "config.schema.yaml")
    config = load_config(args.configfile, schema)
    redux = os.path.join(args.directory, production_roots(config)["redux"])
    prod, prod_cpu, njobs = production_time(redux)
    if njobs == 0:
        sys.exit(f"no benchmark files under {redux}/benchmarks: run the production first (make run)")
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as out:
            wall, cpu = time.perf_counter(), time.process_time()
            run(config, directory=args.directory, outdir=out)
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
            npng = len(glob.glob(os.path.join(out, "**", "*.png"), recursive=True))
    load = os.getloadavg()[0]
    print(f"production: {njobs} jobs, {prod:.1f} s summed job wall time, {prod_cpu:.1f} s summed job CPU time")
    print(f"QA report:  {best_wall:.2f} s wall, {best_cpu:.2f} s CPU (best of {args.repeat}), {npng} figures")
    print(f"ratio report/production: {best_wall / prod:.3%} wall, {best_cpu / prod_cpu:.3%} CPU "
          f"(target < 10 %; load average {load:.2f} on {os.cpu_count()} cores)")
    roots = {k: os.path.join(args.directory, v) for k, v in production_roots(config).items()}
    if os.path.isdir(roots["truth"]):
        truth_comparison(roots, config)


if __name__ == "__main__":
    main()
