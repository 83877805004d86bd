"""Lick indices of the own GALAXY basis' simple stellar populations (issue 13, item 3 of session 4).

The metal-line blends and molecular bands of :mod:`desired.redshift.basis_galaxy`
(``OPTICAL_BLENDS``, ``COOL_STAR_BANDS``) are set so that an old solar-metallicity
population has the Lick indices of real old populations (values in the module).
This prints the indices of 3- and 10-Gyr populations at the metallicities given,
broadened to σ = 200 km/s, with and without the blends.

Usage::

    python benchmarks/lick_indices_basis.py [FEH ...]      # default 0.0
"""
import argparse

import numpy as np

from desired.redshift import basis_galaxy as bg


def indices(fehs, sigma=200.0, blends=True):
    """{(feh, age Gyr): {index: value}} of the basis' SSPs at 3 and 10 Gyr."""
    saved = bg.OPTICAL_BLENDS
    if not blends:
        bg.OPTICAL_BLENDS = ()
    try:
        _, wave = bg.log_wave(3900.0, 6000.0, 5e-5)
        ssp = bg.ssp_spectra(bg.stellar_library(wave, fehs), np.array([3e9, 1e10]))
    finally:
        bg.OPTICAL_BLENDS = saved
    return {(feh, age): {n: bg.lick_index(wave, bg.broaden(wave, ssp[feh][k], sigma), n) for n in bg.LICK_INDICES}
            for feh in fehs for k, age in enumerate((3, 10))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("feh", nargs="*", type=float, default=[0.0])
    parser.add_argument("--no-blends", action="store_true", help="without OPTICAL_BLENDS (the bands stay)")
    args = parser.parse_args()
    res = indices(tuple(args.feh), blends=not args.no_blends)
    names = list(bg.LICK_INDICES)
    print("[Fe/H] age " + " ".join(f"{n:>7s}" for n in names))
    for (feh, age), vals in res.items():
        print(f"{feh:+6.2f} {age:3d} " + " ".join(f"{vals[n]:7.2f}" for n in names))


if __name__ == "__main__":
    main()
