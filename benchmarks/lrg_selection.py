"""The simulator's LRGs against DESI's: selection rate, n(z), z_fiber vs z, colours, stellar masses (issue 13).

Draws ``--n`` quiescent candidates from the LRG priors of :mod:`desired.sim.population`
(comoving volume × quiescent stellar-mass function, Muzzin et al. 2013), computes
their DECam g, r, z and WISE W1 photometry with the SPS model
(:func:`desired.sim.targets.lrg_candidate`) and applies DESI's main LRG cuts
(:func:`desired.sim.population.passes_lrg_cuts`).  Prints, for the *selected* ones:

* the acceptance rate (what :data:`desired.sim.targets.LRG_SELECTION_TRIES` must cover);
* n(z) in the bins of DESI's DR1 LRG clustering samples and the comoving number
  density of the selection, next to the literature figures quoted below;
* z_fiber (each galaxy's own fibre fraction, :func:`desired.sim.targets.assign_size`),
  g − r, r − z, r − W1 and log M* per redshift bin (percentiles 10/50/90).

Literature compared with:

* Zhou et al. (2023, AJ 165, 58), abstract (read this session): target density
  605 deg⁻², redshift range 0.4 < z ≲ 1.0, comoving number density
  5 × 10⁻⁴ h³ Mpc⁻³ in 0.4 < z < 0.8.
* DESI DR1 BAO LRG samples (DESI Collaboration 2024, DESI 2024 III, Table 1;
  quoted from memory, not re-read): 506 905 / 771 875 / 859 824 good redshifts in
  0.4-0.6 / 0.6-0.8 / 0.8-1.1, i.e. 24 / 36 / 40 % of 0.4 < z < 1.1.
* Redshift precision of DESI LRGs ≈ 40 km/s (Lan et al. 2023, ApJ 943, 68,
  abstract: ≈ 10 km/s for BGS and ELGs, ≈ 40 km/s for LRGs) — for comparing the
  fitters' Δv on the simulated LRGs (bench_sim_redrock / bench_templates).

Usage::

    python benchmarks/lrg_selection.py [--n 3000] [--seed 1]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from desired.sim import population
from desired.sim import targets as T

DR1_BINS = ((0.4, 0.6, 506905), (0.6, 0.8, 771875), (0.8, 1.1, 859824))
ZBINS = ((0.3, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0), (1.0, 1.2))
H = 0.6766          # Planck 2018 h


def candidates(n, seed):
    """``n`` LRG candidates: arrays z, log M*, g, r, z, W1, the selection flag, FIBERFLUX/FLUX."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        p, m = T.lrg_candidate(rng)
        rows.append((p["z"], p["log_mstar"], m["G"], m["R"], m["Z"], m["W1"],
                     population.passes_cuts("LRG", m, p["fiber_frac_ls"]), p["fiber_frac_ls"]))
    return np.array(rows, dtype=float)


def prior_density(z):
    """Comoving number density (Mpc⁻³) of quiescent galaxies in the LRG prior's mass range at ``z``."""
    mm = np.linspace(*population.LRG_LOGM_RANGE, 600)
    return float(np.trapezoid(population.quiescent_smf(mm, z), mm))


def pct(a):
    return " ".join(f"{v:6.2f}" for v in np.percentile(a, [10, 50, 90])) if a.size else "     -      -      -"


def report(c):
    z, logm, g, r, zm, w1, sel, ffrac = c.T
    sel = sel > 0
    zfib = zm - 2.5 * np.log10(ffrac)
    print(f"candidates {len(z)}, selected {sel.sum()} (acceptance {sel.mean():.1%}; "
          f"mean tries per LRG {1 / max(sel.mean(), 1e-9):.1f}, LRG_SELECTION_TRIES {T.LRG_SELECTION_TRIES})")
    zs = z[sel]
    print(f"\nselected n(z): median z {np.median(zs):.3f}, 10/90 % {np.percentile(zs, 10):.3f}/"
          f"{np.percentile(zs, 90):.3f}; fraction at z < 0.4: {np.mean(zs < 0.4):.1%}, z > 1.1: {np.mean(zs > 1.1):.1%}")
    inr = (zs > 0.4) & (zs < 1.1)
    tot = sum(n for _, _, n in DR1_BINS)
    print("bin         sim (of 0.4<z<1.1)   DESI DR1 LRG")
    for lo, hi, n in DR1_BINS:
        f = np.mean((zs[inr] >= lo) & (zs[inr] < hi))
        print(f"{lo:.1f}-{hi:.1f}     {f:6.1%}               {n / tot:6.1%}")
    print("\nper z bin: selected fraction of the prior, comoving density of the selection (h^3 Mpc^-3; "
          "Zhou+23 ~5e-4 at 0.4-0.8), percentiles 10/50/90")
    print("z bin      N   sel.frac  n [h3/Mpc3]   z_fiber                g-r                    r-z"
          "                    r-W1                   log M*")
    for lo, hi in ZBINS:
        s = (z >= lo) & (z < hi)
        ss = s & sel
        frac = ss.sum() / max(s.sum(), 1)
        dens = frac * prior_density(0.5 * (lo + hi)) / H ** 3
        print(f"{lo:.1f}-{hi:.1f} {ss.sum():5d}   {frac:6.1%}   {dens:9.2e}   {pct(zfib[ss])}   {pct((g - r)[ss])}   "
              f"{pct((r - zm)[ss])}   {pct((r - w1)[ss])}   {pct(logm[ss])}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="number of candidates drawn from the priors")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    t0 = time.process_time()
    c = candidates(args.n, args.seed)
    print(f"({args.n} candidates in {time.process_time() - t0:.1f} CPU s)")
    report(c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
