"""Redshift fitter side by side with redrock 0.21: same coadd, same templates, one core each.

For each fitter a worker subprocess (OpenBLAS/OMP on one thread; redrock with
``--ncpu 1``) fits the coadd and reports its CPU and wall times, in total (imports,
reading, templates: "incl. start-up") and for the fit alone ("excl. start-up").
Per-target times are those divided by the number of targets fitted.  redrock can be
limited to the first ``--rr-ntargets`` targets (it is the slow one); agreement is
measured on the targets both fitted: fraction of targets that both call confident
(ZWARN == 0) with the same SPECTYPE and |dZ| < 3 sqrt(ZERR1^2 + ZERR2^2), per truth
class when the truth table is given (``truth.fits`` from redshift_inputs.py), plus
each fitter's efficiency against the truth (ZWARN == 0 and |dv| < 1000 km/s, 3000
for QSO) on the same targets.  CPU times are the robust figure on a loaded machine.

Usage::

    python benchmarks/redshift_inputs.py /tmp/rrbench --preset petal --nscience 2 --seed 3
    python benchmarks/bench_redshifts.py /tmp/rrbench/coadd.fits --truth /tmp/rrbench/truth.fits \\
        [--templates ../shared/data/redrock-templates] [--ntargets 100] [--rr-ntargets 100] [--replicate 10]
        [--parallel]

``--replicate K`` stacks the coadd K times (new TARGETIDs) to time 5000 targets
from a 500-target petal coadd (timing only).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TEMPLATES = os.path.join(HERE, "..", "..", "shared", "data", "redrock-templates")
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(inner, fit):
    """``inner`` wrapped to record its CPU and wall seconds of the last call into ``fit``."""
    def timed(*args, **kwargs):
        c0, w0 = _cpu(), time.time()
        out = inner(*args, **kwargs)
        fit.update(cpu=_cpu() - c0, wall=time.time() - w0)
        return out
    return timed


def worker(which, coadd, outfile, templates, ntargets):
    """Run one fitter in this process; print JSON timings."""
    t_wall0 = time.time()
    fit = {}
    if which == "ours":
        from desired.redshift import zfind
        from desired.scripts.redshifts import run
        from desired.threads import single_threaded_blas
        zfind.fit_redshifts = _timed(zfind.fit_redshifts, fit)
        with single_threaded_blas():
            table = run(coadd, outfile, templates=templates)
        n = len(table)
    else:
        import redrock.external.desi as rrdesi_mod
        rrdesi_mod.zfind = _timed(rrdesi_mod.zfind, fit)
        opts = ["-i", coadd, "-o", outfile, "--templates", templates, "--ncpu", "1"]
        if ntargets:
            opts += ["--ntargets", str(ntargets)]
        rrdesi_mod.rrdesi(opts)
        from astropy.table import Table
        n = len(Table.read(outfile, "REDSHIFTS"))
    print("BENCHJSON " + json.dumps(dict(which=which, n=n, cpu_total=_cpu(), wall_total=time.time() - t_wall0,
                                         cpu_fit=fit["cpu"], wall_fit=fit["wall"])))


def launch(which, coadd, outfile, templates, ntargets=None):
    """Run a worker subprocess (one thread); return its timings (CPU includes the interpreter's start)."""
    env = dict(os.environ, **ONE_THREAD)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", which, coadd, "--out", outfile,
           "--templates", templates]
    if ntargets:
        cmd += ["--rr-ntargets", str(ntargets)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCHJSON ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{which} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("BENCHJSON "):])


def replicate(coadd, k, outfile):
    """Stack a coadd k times with new TARGETIDs (timing at larger target counts)."""
    import numpy as np
    from astropy.table import vstack
    from desired.io.spectra import read_spectra, write_spectra
    from desired.spectra import Spectra
    s = read_spectra(coadd)
    cat = {name: {b: np.concatenate([getattr(s, name)[b]] * k) for b in s.bands}
           for name in ("flux", "ivar", "mask", "resolution_data")}
    fms = []
    for i in range(k):
        fm = s.fibermap.copy()
        fm["TARGETID"] = fm["TARGETID"] + i * 10 ** 9
        fms.append(fm)
    out = Spectra(s.bands, s.wave, cat["flux"], cat["ivar"], cat["mask"], cat["resolution_data"], vstack(fms),
                  exp_fibermap=s.exp_fibermap, header=s.header)
    write_spectra(outfile, out)
    return outfile


def subset(coadd, n, outfile):
    """The first n targets of a coadd (so that both fitters time the same targets)."""
    import numpy as np
    from desired.io.spectra import read_spectra, write_spectra
    from desired.spectra import Spectra
    s = read_spectra(coadd)

    def first(d):
        return {b: d[b][:n] for b in s.bands}
    exp = s.exp_fibermap
    if exp is not None:
        exp = exp[np.isin(exp["TARGETID"], np.asarray(s.fibermap["TARGETID"][:n]))]
    out = Spectra(s.bands, s.wave, first(s.flux), first(s.ivar), first(s.mask), first(s.resolution_data),
                  s.fibermap[:n], exp_fibermap=exp, scores=None if s.scores is None else s.scores[:n],
                  header=s.header)
    write_spectra(outfile, out)
    return outfile


def compare(ours_path, rr_path, truth_path=None):
    """Print agreement and efficiency per class on the targets both fitted."""
    import numpy as np
    from astropy.table import Table, join
    a = Table.read(ours_path, "REDSHIFTS")
    b = Table.read(rr_path, "REDSHIFTS")
    a.meta.clear()
    b.meta.clear()
    keep = ["TARGETID", "Z", "ZERR", "ZWARN", "SPECTYPE", "DELTACHI2", "CHI2"]
    t = join(a[keep], b[keep], keys="TARGETID", table_names=["ours", "rr"])
    cls = np.full(len(t), "ALL", dtype="U8")
    ztrue = None
    if truth_path:
        truth = Table.read(truth_path)
        idx = {int(x): i for i, x in enumerate(truth["TARGETID"])}
        rows = [idx.get(int(x), idx.get(int(x) % 10 ** 9, -1)) for x in t["TARGETID"]]
        cls = np.array([str(truth["TEMPLATETYPE"][r]).strip() if r >= 0 else "?" for r in rows])
        ztrue = np.array([truth["TRUEZ"][r] if r >= 0 else np.nan for r in rows])
    sp = {k: np.char.strip(np.asarray(t[f"SPECTYPE_{k}"]).astype(str)) for k in ("ours", "rr")}
    conf = {k: np.asarray(t[f"ZWARN_{k}"]) == 0 for k in ("ours", "rr")}
    both = conf["ours"] & conf["rr"]
    sig = np.hypot(t["ZERR_ours"], t["ZERR_rr"])
    same = (np.abs(t["Z_ours"] - t["Z_rr"]) < 3 * sig) & (sp["ours"] == sp["rr"])
    print(f"{'class':6} {'N':>5} {'both conf':>9} {'agree':>7} {'eff ours':>8} {'eff rr':>7} "
          f"{'conf ours':>9} {'conf rr':>8}")
    for c in ["ALL"] + sorted(set(cls) - {"ALL"}):
        sel = np.ones(len(t), bool) if c == "ALL" else cls == c
        nb = int((both & sel).sum())
        agree = (same & both & sel).sum() / nb if nb else float("nan")
        eff = {}
        for k in ("ours", "rr"):
            if ztrue is None:
                eff[k] = float("nan")
                continue
            dv = 299792.458 * np.abs(t[f"Z_{k}"] - ztrue) / (1 + ztrue)
            lim = np.where(cls == "QSO", 3000.0, 1000.0)
            eff[k] = (conf[k] & (dv < lim) & sel).sum() / max(sel.sum(), 1)
        print(f"{c:6} {int(sel.sum()):5d} {nb:9d} {agree:7.3f} {eff['ours']:8.3f} {eff['rr']:7.3f} "
              f"{int((conf['ours'] & sel).sum()):9d} {int((conf['rr'] & sel).sum()):8d}")
    bad = both & ~same
    for i in np.where(bad)[0][:10]:
        print(f"  disagree TARGETID {t['TARGETID'][i]} {cls[i]}: ours {t['Z_ours'][i]:.5f} {sp['ours'][i]} "
              f"rr {t['Z_rr'][i]:.5f} {sp['rr'][i]} dchi2 {t['DELTACHI2_ours'][i]:.1f}/{t['DELTACHI2_rr'][i]:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("coadd")
    parser.add_argument("--truth", default=None)
    parser.add_argument("--templates", default=DEFAULT_TEMPLATES)
    parser.add_argument("--rr-ntargets", type=int, default=None, help="redrock fits only the first N targets")
    parser.add_argument("--replicate", type=int, default=1, help="stack the coadd K times (timing)")
    parser.add_argument("--ntargets", type=int, default=None, help="both fitters on the first N targets only")
    parser.add_argument("--parallel", action="store_true",
                        help="run the two workers at the same time (CPU times stay per process)")
    parser.add_argument("--outdir", default=None)
    parser.add_argument("--skip-redrock", action="store_true")
    parser.add_argument("--worker", choices=["ours", "redrock"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.coadd, args.out, args.templates, args.rr_ntargets)
        return
    if not os.path.isdir(args.templates):
        print(f"SKIP: no redrock templates at {args.templates}")
        return
    outdir = args.outdir or tempfile.mkdtemp(prefix="bench_rr_")
    coadd = args.coadd
    if args.replicate > 1:
        coadd = replicate(coadd, args.replicate, os.path.join(outdir, f"coadd-x{args.replicate}.fits"))
    if args.ntargets:
        coadd = subset(coadd, args.ntargets, os.path.join(outdir, f"coadd-first{args.ntargets}.fits"))
    ours_out, rr_out = os.path.join(outdir, "redrock-ours.fits"), os.path.join(outdir, "redrock-rr.fits")
    jobs = [("ours", coadd, ours_out, args.templates, None)]
    if not args.skip_redrock:
        jobs.append(("redrock", coadd, rr_out, args.templates, args.rr_ntargets))
    if args.parallel:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(len(jobs)) as pool:
            res = list(pool.map(lambda job: launch(*job), jobs))
    else:
        res = [launch(*job) for job in jobs]
    print(f"load average at end: {os.getloadavg()[0]:.1f} (CPU times are per process; wall times suffer from load)")
    print(f"{'fitter':8} {'N':>5} {'cpu/target fit':>15} {'cpu/target total':>17} {'wall/target fit':>16} "
          f"{'wall/target total':>18}")
    for r in res:
        n = r["n"]
        print(f"{r['which']:8} {n:5d} {r['cpu_fit'] / n:15.3f} {r['cpu_total'] / n:17.3f} {r['wall_fit'] / n:16.3f} "
              f"{r['wall_total'] / n:18.3f}")
    if len(res) == 2:
        o, r = res
        print(f"speed-up per target (redrock / ours): fit {r['cpu_fit'] / r['n'] / (o['cpu_fit'] / o['n']):.2f}x, "
              f"incl. start-up {r['cpu_total'] / r['n'] / (o['cpu_total'] / o['n']):.2f}x (CPU); "
              f"wall fit {r['wall_fit'] / r['n'] / (o['wall_fit'] / o['n']):.2f}x")
        compare(ours_out, rr_out, args.truth)


if __name__ == "__main__":
    main()
