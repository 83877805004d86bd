"""Refinement of chi2(z) minima: fine grid, parabola, ZERR, distinct solutions, DELTACHI2.

Follows redrock's ``fitz`` and ``zfind`` rules, so that results compare one to one:
up to ``nminima`` minima per template,
each resampled on 15 redshifts between its coarse neighbours with the exact
(double-precision) chi2, a parabola through the three lowest points giving Z, ZERR
(where chi2 rises by 1) and CHI2; candidates
closer than the template class's velocity limit are merged; across templates the
candidates are sorted by (bad fit, chi2), DELTACHI2 is the chi2 difference to the
next distinct good candidate and SMALL_DELTA_CHI2 flags a distinct good candidate
within 9.  Two rules differ from redrock's: the velocity limit of quasars is 3000 km/s,
not 1000 (:data:`desired.redshift.templates.MAX_VELOCITY_DIFF` says why), and for
galaxies, whose minima can be narrower than the coarse step, and quasars, whose
3000 km/s window holds several minima, the best ``nrefine`` coarse minima are refined
even when they are not distinct (:data:`desired.redshift.zfind.NARROW_MINIMA_REFINE`).
"""
from __future__ import annotations

import numpy as np

from .zscan import chi2_direct
from .zwarning import BADFIT_MASK, zwarn

C_KMS = 299792.458
#: chi2 difference below which two distinct solutions are ambiguous (redrock's value)
MIN_DELTACHI2 = 9.0


def velocity_difference(z, zref):
    """c (z - zref) / (1 + zref), km/s."""
    return C_KMS * (np.asarray(z) - zref) / (1.0 + zref)


def find_minima(values):
    """Indices of the local minima of ``values`` (edges included), sorted by value."""
    x = np.asarray(values)
    ii = np.where(np.r_[True, x[1:] <= x[:-1]] & np.r_[x[:-1] <= x[1:], True])[0]
    return ii[np.argsort(x[ii], kind="stable")]


def fit_parabola(x, y):
    """Fit y = y0 + ((x - x0) / xerr)^2 through points; return (x0, xerr, y0, zwarn bits)."""
    if len(x) < 3:
        return -1.0, -1.0, -1.0, zwarn.BAD_MINFIT
    try:
        a, b, c = np.polyfit(x, y, 2)
    except (np.linalg.LinAlgError, ValueError):
        return -1.0, -1.0, -1.0, zwarn.BAD_MINFIT
    if a == 0.0 or not np.isfinite(a):
        return -1.0, -1.0, -1.0, zwarn.BAD_MINFIT
    x0 = -b / (2 * a)
    y0 = -(b ** 2) / (4 * a) + c
    flags = 0
    if x0 <= np.min(x) or np.max(x) <= x0 or y0 <= 0.0:
        flags |= zwarn.BAD_MINFIT
    if a < 0:
        flags |= zwarn.BAD_MINFIT
    return x0, 1.0 / np.sqrt(abs(a)), y0, flags


def _refine_one(bands, template, redshifts, imin, npoints):
    """Refine one coarse minimum; return a candidate dict."""
    ilo, ihi = max(0, imin - 1), min(imin + 1, redshifts.size - 1)
    zz = np.linspace(redshifts[ilo], redshifts[ihi], npoints)
    zzchi2, _ = chi2_direct(bands, template, zz)
    i = min(max(int(np.argmin(zzchi2)), 1), npoints - 2)
    zmin, zerr, chi2min, flags = fit_parabola(zz[i - 1:i + 2], zzchi2[i - 1:i + 2])
    zbest = zmin
    if zbest < zz[0] or zbest > zz[-1]:
        flags |= zwarn.BAD_MINFIT
        k = int(np.argmin(zzchi2))
        zbest, chi2min = zz[k], zzchi2[k]
    if not (redshifts[1] <= zbest <= redshifts[-2]) or not (redshifts[1] <= zmin <= redshifts[-2]):
        flags |= zwarn.Z_FITLIMIT
    _, coeff, model_sum = chi2_direct(bands, template, np.array([zbest]), with_model=True)
    if model_sum[0] < 0:
        flags |= zwarn.NEGATIVE_MODEL
    return dict(z=float(zbest), zerr=float(zerr), zwarn=int(flags), chi2=float(chi2min), coeff=coeff[0])


def refine_minima(bands, template, zchi2, nminima=3, npoints=15, nrefine=0):
    """Best distinct solutions of one target for one template.

    The coarse minima are refined in order of coarse chi2 until ``nminima``
    distinct solutions are found, and at least the first ``nrefine`` of them even
    when they lie within the velocity limit of a better one; of the refined
    candidates the best (by refined chi2) of each velocity window (the class's
    velocity limit) is kept.  With ``nrefine=0`` this is redrock's rule, which skips a
    coarse minimum within the velocity limit of a better coarse one: a minimum
    narrower than the coarse step (narrow emission lines: a few tens of km/s against
    ~200 km/s) can then be lost to a neighbouring alias (Hα against [N II] 6585 at
    -940 km/s) whose coarse point happens to fall closer to its own minimum.
    Refining both keeps the one with the lower chi2.

    Parameters
    ----------
    bands : list of BandSpectra
        One target per band.
    template : Template
    zchi2 : ndarray, shape (nz,)
        Coarse chi2 on ``template.redshifts`` (penalty included).
    nminima : int
    npoints : int
        Fine-grid points between the coarse neighbours of a minimum.
    nrefine : int
        Coarse minima refined at least, distinct or not (0: redrock's rule).

    Returns
    -------
    list of dict
        Keys z, zerr, zwarn, chi2, coeff (nbasis,), sorted by chi2.
    """
    redshifts = np.asarray(template.redshifts)
    vmax = template.max_velocity_diff
    minima = find_minima(zchi2)
    first = [_refine_one(bands, template, redshifts, imin, npoints) for imin in minima[:nrefine]]
    results = distinct_solutions(first, vmax, nminima)
    for imin in minima[nrefine:]:
        if len(results) == nminima:
            break
        zprev = np.array([r["z"] for r in results])
        if np.any(np.abs(velocity_difference(redshifts[imin], zprev)) < vmax):
            continue
        cand = _refine_one(bands, template, redshifts, imin, npoints)
        if np.any(np.abs(velocity_difference(cand["z"], zprev)) < vmax):
            continue
        results.append(cand)
    return sorted(results, key=lambda r: r["chi2"])


def distinct_solutions(candidates, vmax, nminima):
    """The ``nminima`` best candidates (by chi2) that are at least ``vmax`` km/s from every better one."""
    out = []
    for cand in sorted(candidates, key=lambda c: c["chi2"]):
        if len(out) == nminima:
            break
        if not any(abs(velocity_difference(cand["z"], c["z"])) < vmax for c in out):
            out.append(cand)
    return out


def coarse_minima(template, zchi2, nminima=3):
    """Up to ``nminima`` coarse minima of one template, distinct by the class's velocity limit.

    Returns
    -------
    list of int
        Indices into ``template.redshifts``, best first.
    """
    redshifts = np.asarray(template.redshifts)
    out = []
    for imin in find_minima(zchi2):
        if len(out) == nminima:
            break
        if np.any(np.abs(velocity_difference(redshifts[imin], redshifts[out])) < template.max_velocity_diff):
            continue
        out.append(int(imin))
    return out


def refine_class(bands, templates, zchi2, nminima=3, margin=100.0, npoints=15):
    """Solutions of the templates of one class whose coarse grid resolves their minima (stars).

    The subtypes of a class compete for its ``nminima`` places in the final list.
    Their coarse minima are refined in order of coarse chi2 while that is below the
    best refined chi2 of the class + ``margin``; the others keep their coarse values
    (flagged ``refined=False``): they can only enter DELTACHI2 at more than
    ``margin``, where a coarse value is good to a few units.  Only for classes whose
    coarse step is finer than the spectral resolution (STAR: 12 km/s).

    Parameters
    ----------
    bands : list of BandSpectra
        One target.
    templates : list of Template
        The class's templates.
    zchi2 : dict fulltype -> ndarray
        Coarse chi2 of each template.

    Returns
    -------
    list of (Template, dict)
    """
    queue = []
    for t in templates:
        for imin in coarse_minima(t, zchi2[t.fulltype], nminima):
            queue.append((float(zchi2[t.fulltype][imin]), t.fulltype, t, imin))
    queue.sort(key=lambda q: (q[0], q[1]))
    best, out, done = np.inf, [], {}
    for chi2, _, t, imin in queue:
        results = done.setdefault(t.fulltype, [])
        zprev = np.array([r["z"] for r in results])
        zc = float(np.asarray(t.redshifts)[imin])
        if np.any(np.abs(velocity_difference(zc, zprev)) < t.max_velocity_diff):
            continue
        if chi2 < best + margin:
            cand = _refine_one(bands, t, np.asarray(t.redshifts), imin, npoints)
            if np.any(np.abs(velocity_difference(cand["z"], zprev)) < t.max_velocity_diff):
                continue
            cand["refined"] = True
            best = min(best, cand["chi2"])
        else:
            cand = dict(z=zc, zerr=0.0, zwarn=0, chi2=chi2, coeff=np.zeros(t.nbasis), refined=False, imin=imin)
        results.append(cand)
        out.append((t, cand))
    return out


def refine_candidate(bands, template, cand, npoints=15):
    """Refine a candidate left at its coarse values by :func:`refine_class` (in place); return it."""
    cand.update(_refine_one(bands, template, np.asarray(template.redshifts), cand.pop("imin"), npoints))
    cand["refined"] = True
    return cand


def delta_chi2(chi2, z, flags, vlimit):
    """DELTACHI2 to the next distinct good candidate, and which candidates are ambiguous.

    Parameters
    ----------
    chi2, z : ndarray, shape (ncand,)
        Sorted by (bad fit, chi2).
    flags : ndarray of int, shape (ncand,)
    vlimit : ndarray, shape (ncand,)
        Velocity (km/s) below which two candidates are the same solution.

    Returns
    -------
    deltachi2 : ndarray, shape (ncand,)
    small : ndarray of bool, shape (ncand,)
        A distinct good candidate lies within :data:`MIN_DELTACHI2`.
    """
    n = len(chi2)
    good = (flags & BADFIT_MASK) == 0
    deltachi2 = np.zeros(n)
    small = np.zeros(n, dtype=bool)
    for i in range(n):
        others = np.arange(n) != i
        dv = np.abs(velocity_difference(z, z[i]))
        distinct = dv >= np.minimum(vlimit[i], vlimit)
        later = np.arange(n) > i
        sel = later & (dv > np.minimum(vlimit[i], vlimit)) & good
        if np.any(sel):
            deltachi2[i] = np.min(chi2[sel] - chi2[i])
        small[i] = np.any(others & good & distinct & (np.abs(chi2 - chi2[i]) < MIN_DELTACHI2))
    return deltachi2, small


def combine_candidates(candidates, npixels, nminima=3):
    """Rank one target's candidates of all templates; return them with DELTACHI2 and ZWARN.

    Parameters
    ----------
    candidates : list of dict
        Each with z, zerr, zwarn, chi2, coeff, spectype, subtype, vlimit.
    npixels : int
        Pixels with weight > 0 (all bands).
    nminima : int
        Candidates kept per template class.

    Returns
    -------
    list of dict
        Best first; each gains ``deltachi2``, ``npixels`` and ``ncoeff``.
    """
    for c in candidates:
        c["ncoeff"] = len(c["coeff"])
        c["npixels"] = int(npixels)
        if npixels == 0:
            c["zwarn"] |= zwarn.NODATA
        if npixels < 10 * c["ncoeff"]:
            c["zwarn"] |= zwarn.LITTLE_COVERAGE

    def rank(c):
        return (bool(c["zwarn"] & BADFIT_MASK), c["chi2"])

    ordered = sorted(candidates, key=rank)
    kept, count = [], {}
    for c in ordered:
        if count.get(c["spectype"], 0) < nminima:
            kept.append(c)
            count[c["spectype"]] = count.get(c["spectype"], 0) + 1
    kept = sorted(kept, key=rank)
    if not kept:
        return kept
    dchi2, small = delta_chi2(np.array([c["chi2"] for c in kept]), np.array([c["z"] for c in kept]),
                              np.array([c["zwarn"] for c in kept]), np.array([c["vlimit"] for c in kept]))
    for c, d, s in zip(kept, dchi2, small):
        c["deltachi2"] = float(d)
        if s:
            c["zwarn"] |= zwarn.SMALL_DELTA_CHI2
    return kept
