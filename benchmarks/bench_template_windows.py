"""Where a GALAXY template set puts its velocity zero point: the best velocity in rest-frame windows.

For every target of a coadd, the GALAXY template of each template directory is fitted
on a ±400 km/s grid around a reference redshift, once on the whole spectrum and once
per rest-frame window (the rest of the pixels at zero weight); the minimum of each
chi2 curve (parabola through the lowest three points) is the window's velocity.  The
median over targets per window and template set is printed.  A template set whose
features sit at the wrong rest wavelengths shows the same offset in the same window
on every galaxy, whatever the noise; a window where the whole-spectrum fit and the
window fit disagree is where the zero point is pulled.

Reference redshift: the simulator's ``TRUEZ`` (``--truth``) or a redshift file's ``Z``
(``--zref``, e.g. redrock's on a real spectrum).  ``--noise-free DIR`` replaces each
target's flux by its resolution-convolved true flux (the ``truth-{b,r,z}0-*.fits`` of a
simulated exposure in DIR, fibre = TARGET row), so template mismatch is seen without noise.

Usage::

    python benchmarks/bench_template_windows.py COADD --truth TRUTH [--noise-free TRUTHDIR] \\
        [--class LRG] [--ntargets 40] --templates /tmp/own --templates ../shared/data/redrock-templates
    python benchmarks/bench_template_windows.py COADD --zref REDROCK --templates ...   # real spectra
"""
import argparse
import dataclasses
import glob
import os

import numpy as np

C_KMS = 299792.458
#: rest-frame windows (Å): Ca II H&K and the 4000-Å break, CN/Hδ, the CH G band, Hγ-Fe4531,
#: Hβ-Fe5015, Mg b and Fe5270, Fe5335-Fe5406, Na D, Hα-[N II]
WINDOWS = ((3700, 3900), (3900, 4050), (4050, 4250), (4250, 4350), (4350, 4800), (4800, 5100),
           (5100, 5300), (5300, 5700), (5700, 6200), (6200, 7000))


def noise_free(spectra, tids, fibers, truth_dir):
    """A copy of ``spectra`` (rows ``tids``) with flux = R @ true object flux of the exposure in truth_dir.

    ``fibers`` maps TARGETID to the truth's FIBER (the coadd's FIBERMAP has none).
    """
    import fitsio
    from desired.resolution import apply_resolution
    out = spectra.select(targets=list(tids))
    for band in out.bands:
        path = glob.glob(os.path.join(truth_dir, f"truth-{band}0-*.fits"))[0]
        obj = fitsio.read(path, "OBJ_FLUX")
        rows = np.array([fibers[t] % obj.shape[0] for t in tids])
        out.flux[band] = apply_resolution(out.resolution_data[band], obj[rows].astype(np.float64))
    return out


def window_velocities(bands, template, zref, dvs):
    """Best velocity (km/s) of one target (ntarget 1) over the whole spectrum and per window."""
    from desired.redshift.fit import fit_parabola
    from desired.redshift.zscan import chi2_direct
    redshifts = (1 + zref) * (1 + dvs / C_KMS) - 1
    out = []
    for window in (None,) + WINDOWS:
        one = []
        for band in bands:
            weight = band.weight.copy()
            if window is not None:
                rest = band.wave / (1 + zref)
                weight[:, (rest < window[0]) | (rest > window[1])] = 0.0
            one.append(dataclasses.replace(band, weight=weight))
        if sum(int((b.weight > 0).sum()) for b in one) < 100:
            out.append(np.nan)
            continue
        chi2, _ = chi2_direct(one, template, redshifts)
        j = int(np.argmin(chi2))
        inside = 0 < j < dvs.size - 1
        out.append(fit_parabola(dvs[j - 1:j + 2], chi2[j - 1:j + 2])[0] if inside else np.nan)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("coadd")
    ref = parser.add_mutually_exclusive_group(required=True)
    ref.add_argument("--truth", help="simulator truth table (TARGETID, TRUEZ, TEMPLATETYPE)")
    ref.add_argument("--zref", help="redshift file whose Z is the reference")
    parser.add_argument("--templates", action="append", required=True, help="template directory (repeatable)")
    parser.add_argument("--noise-free", default=None, help="truth directory of one exposure (simulations only)")
    parser.add_argument("--class", dest="cls", default=None, help="only targets of this truth TEMPLATETYPE")
    parser.add_argument("--ntargets", type=int, default=40)
    args = parser.parse_args()
    from astropy.table import Table
    from desired.io.spectra import read_spectra
    from desired.io.templates import read_templates
    from desired.redshift.zfind import prepare_bands

    spectra = read_spectra(args.coadd)
    if args.truth:
        truth = Table.read(args.truth, "TRUTH")
        zref = {int(t): float(z) for t, z in zip(truth["TARGETID"], truth["TRUEZ"])}
        cls = {int(t): str(c).strip() for t, c in zip(truth["TARGETID"], truth["TEMPLATETYPE"])}
        fibers = {int(t): int(f) for t, f in zip(truth["TARGETID"], truth["FIBER"])}
    else:
        table = Table.read(args.zref, "REDSHIFTS")
        zref = {int(t): float(z) for t, z in zip(table["TARGETID"], table["Z"])}
        cls, fibers = {}, None
    if args.noise_free and fibers is None:
        raise SystemExit("--noise-free needs --truth (the FIBER of each target)")
    tids = [int(t) for t in spectra.fibermap["TARGETID"] if int(t) in zref
            and (args.cls is None or cls.get(int(t)) == args.cls)][:args.ntargets]
    if not tids:
        raise SystemExit("no target with a reference redshift (and of the class asked)")
    spectra = noise_free(spectra, tids, fibers, args.noise_free) if args.noise_free else spectra.select(targets=tids)
    bands = prepare_bands(spectra)
    dvs = np.arange(-400.0, 401.0, 4.0)
    names = ["all"] + [f"{lo}-{hi}" for lo, hi in WINDOWS]
    print(f"{len(tids)} targets; median best velocity (km/s) relative to the reference, per rest window (Å)")
    print(f"{'templates':28} " + " ".join(f"{n:>9}" for n in names))
    for tdir in args.templates:
        template = [t for t in read_templates(tdir) if t.spectype == "GALAXY"][0]
        rows = np.array([window_velocities([b.subset(slice(i, i + 1)) for b in bands], template, zref[t], dvs)
                         for i, t in enumerate(tids)])
        finite = np.isfinite(rows)
        med = np.array([np.median(rows[finite[:, k], k]) if finite[:, k].any() else np.nan
                        for k in range(rows.shape[1])])
        label = os.path.basename(os.path.normpath(tdir))[:28]
        print(f"{label:28} " + " ".join(f"{m:9.1f}" for m in med), flush=True)


if __name__ == "__main__":
    main()
