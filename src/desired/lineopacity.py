"""LTE line opacity of a full atomic and molecular line list, for :mod:`desired.stdmodels`.

:func:`desired.stdmodels.model_spectrum` with a line list (``linelist=``, read by
:mod:`desired.io.linelist`) replaces its ~30 named metal lines by every line of the
list: linemake's (V. Placco) compilation of Kurucz, VALD and laboratory data, ~40 000
atomic lines per 1000 Å in the near UV, CH, NH, OH, MgH, SiH, CN and C2 bands.

Physics (Gray, *The Observation and Analysis of Stellar Photospheres*, 3rd ed., ch. 8, 11):

* **atoms**: Boltzmann-Saha populations of the neutral and first ion of 30 elements (the
  second ion, whose lines are not computed, takes its share in hot stars)
  (:data:`ATOMS`: solar abundances of Asplund et al. 2009, ARA&A 47, 481, scaled by
  [Fe/H]; ionisation energies; partition functions held at their ~5000 K values, a
  simplification that is worst for the hottest and coolest stars);
* **molecules**: dissociation equilibrium ``n_A n_B / n_AB = (2π μ k T / h²)^{3/2}
  u_A u_B / u_AB · exp(-D0/kT)`` with rigid-rotor/harmonic partition functions
  (:data:`MOLECULES`: ground-state rotational constant, vibrational quantum,
  electronic weight); carbon is first shared with oxygen in CO;
* **profiles**: pseudo-Voigt, thermal + 1.5 km/s microturbulent Doppler width, classical
  radiative and Unsöld van der Waals damping (:func:`damping_width`); the Doppler width is
  widened in quadrature by 0.7 of the computing grid's pixel so that an unresolved line
  keeps its integrated opacity (a saturated line's equivalent width grows with its Doppler
  width, so on a grid coarser than ~2 km/s the saturated lines come out too strong);
* lines whose centre opacity stays below :data:`ETA_MIN` of the continuum at every depth
  are dropped; each line's window reaches where its Lorentz wing falls to that level.
"""
from __future__ import annotations

import numba
import numpy as np

from .stdmodels import AMU, C_ANGSTROM, EV_ANGSTROM, K_BOLTZ, SIGMA_LINE, _saha_phi, _voigt_approx

#: line-centre opacity / continuum below which a line is dropped (at every depth)
ETA_MIN = 1e-4
#: line / continuum opacity at the edge of a line's window (its Lorentz wing)
ETA_WING = 1e-3
#: half windows (pixels) of the lines computed with one profile shape at all depths
SHARED_WINDOWS = (8, 32, 128)
#: τ_5000 of the layer whose Doppler and damping widths shape the narrow lines
TAU_PROFILE = 0.5
#: microturbulence, km/s
VTURB = 1.5
H_PLANCK = 6.62607e-27
HC_CM = 1.98645e-16 / 1.380649e-16      # hc/k in cm K
C_CM = C_ANGSTROM * 1e-8                # speed of light, cm/s

#: Z -> (log ε (H = 12, Asplund et al. 2009), ionisation energy eV, u_I, u_II (~5000 K), mass amu)
ATOMS = {
    1: (12.00, 13.598, 2.0, 1.0, 1.008), 3: (1.05, 5.392, 2.1, 1.0, 6.94),
    6: (8.43, 11.260, 9.3, 5.9, 12.011), 7: (7.83, 14.534, 4.0, 8.9, 14.007),
    8: (8.69, 13.618, 8.7, 4.0, 15.999), 11: (6.24, 5.139, 2.0, 1.0, 22.990),
    12: (7.60, 7.646, 1.0, 2.0, 24.305), 13: (6.45, 5.986, 5.8, 1.0, 26.982),
    14: (7.51, 8.152, 9.4, 5.7, 28.086), 15: (5.41, 10.487, 5.5, 8.0, 30.974),
    16: (7.12, 10.360, 8.6, 4.3, 32.06), 19: (5.03, 4.341, 2.2, 1.0, 39.098),
    20: (6.34, 6.113, 1.2, 2.1, 40.078), 21: (3.15, 6.561, 10.0, 21.0, 44.956),
    22: (4.95, 6.828, 30.0, 55.0, 47.867), 23: (3.93, 6.746, 40.0, 35.0, 50.942),
    24: (5.64, 6.767, 10.0, 7.0, 51.996), 25: (5.43, 7.434, 6.0, 7.0, 54.938),
    26: (7.50, 7.902, 25.0, 40.0, 55.845), 27: (4.99, 7.881, 30.0, 25.0, 58.933),
    28: (6.22, 7.640, 28.0, 10.0, 58.693), 29: (4.19, 7.726, 2.3, 1.0, 63.546),
    30: (4.56, 9.394, 1.0, 2.0, 65.38), 38: (2.87, 5.695, 1.3, 2.0, 87.62),
    39: (2.21, 6.217, 10.0, 14.0, 88.906), 40: (2.58, 6.634, 30.0, 45.0, 91.224),
    56: (2.18, 5.212, 2.5, 4.5, 137.33), 57: (1.10, 5.577, 30.0, 30.0, 138.91),
    58: (1.58, 5.539, 100.0, 150.0, 140.12), 60: (1.42, 5.525, 60.0, 100.0, 144.24),
    63: (0.52, 5.670, 8.0, 9.0, 151.96),
}

#: Z -> second ionisation energy (eV): the van der Waals constant of the first ion's lines
SECOND_ION = {3: 75.64, 6: 24.38, 7: 29.60, 8: 35.12, 11: 47.29, 12: 15.04, 13: 18.83, 14: 16.35, 15: 19.77,
              16: 23.34, 19: 31.63, 20: 11.87, 21: 12.80, 22: 13.58, 23: 14.66, 24: 16.49, 25: 15.64, 26: 16.19,
              27: 17.08, 28: 18.17, 29: 20.29, 30: 17.96, 38: 11.03, 39: 12.24, 40: 13.13, 56: 10.00, 57: 11.06,
              58: 10.85, 60: 10.73, 63: 11.24}
#: solar isotopic fractions (by number) of the isotopologue lines: a MOOG list gives each
#: isotopologue (species 607.01214 = 12C14N, 607.01314 = 13C14N, ...) its full gf and leaves the
#: isotope ratio to the synthesis
ISOTOPES = {1: 1.0, 12: 0.9893, 13: 0.0107, 14: 0.9964, 15: 0.0036, 16: 0.99757, 17: 0.00038, 18: 0.00205,
            24: 0.7899, 25: 0.1000, 26: 0.1101, 28: 0.92223, 29: 0.04685, 30: 0.03092, 35: 0.7576, 37: 0.2424}

#: factor on Unsöld's van der Waals width (Unsöld's hydrogenic approximation underestimates the
#: broadening of metal lines by ~2: Holweger 1972; Barklem et al. 2000)
VDW_ENHANCEMENT = 2.0

#: MOOG code -> (Z_A, Z_B, D0 eV, B cm^-1, ω cm^-1, electronic weight, symmetry number):
#: ground-state constants (Huber & Herzberg 1979)
MOLECULES = {
    106: (6, 1, 3.47, 14.19, 2858.5, 4, 1),      # CH   X 2Π
    107: (7, 1, 3.47, 16.70, 3282.3, 3, 1),      # NH   X 3Σ-
    108: (8, 1, 4.39, 18.91, 3737.8, 4, 1),      # OH   X 2Π
    112: (12, 1, 1.34, 5.83, 1495.2, 2, 1),      # MgH  X 2Σ+
    114: (14, 1, 3.06, 7.50, 2041.8, 4, 1),      # SiH  X 2Π
    606: (6, 6, 6.21, 1.82, 1854.7, 1, 2),       # C2   X 1Σg+
    607: (6, 7, 7.72, 1.90, 2068.6, 2, 1),       # CN   X 2Σ+
    608: (6, 8, 11.09, 1.93, 2169.8, 1, 1),      # CO   X 1Σ+ (carbon's sink)
}


def _molecule_partition(temp, b_rot, omega, g_el, sym):
    """Rigid-rotor, harmonic-oscillator partition function of a diatomic molecule."""
    x = temp / HC_CM
    return g_el * x / (sym * b_rot) / (1.0 - np.exp(-omega / x))


def _dissociation_constant(temp, code, u_a, u_b):
    """``n_A n_B / n_AB`` (cm^-3) of molecule ``code`` at ``temp`` (K)."""
    za, zb, d0, b_rot, omega, g_el, sym = MOLECULES[code]
    mu = ATOMS[za][4] * ATOMS[zb][4] / (ATOMS[za][4] + ATOMS[zb][4]) * AMU
    trans = (2 * np.pi * mu * K_BOLTZ * temp / H_PLANCK ** 2) ** 1.5
    return trans * u_a * u_b / _molecule_partition(temp, b_rot, omega, g_el, sym) * np.exp(-d0 * 11604.52 / temp)


def species_populations(temp, pe, pg, fneutral_h, feh, a_he=0.085):
    """Number density per neutral H atom, divided by the partition function, of every species.

    Parameters
    ----------
    temp, pe, pg, fneutral_h : ndarray (ndepth,)
        Temperature (K), electron and gas pressure (dyn cm^-2), neutral fraction of H.
    feh : float
        [Fe/H]: every element but H scales with it.

    Returns
    -------
    dict
        ``100 Z + stage`` for atoms (stage 1 neutral, 2 first ion; 2601 is Fe I) or the
        molecule's MOOG code (607 is CN) -> ndarray (ndepth,) of ``n / (n_HI u)``.
    """
    n_h = (pg - pe) / (K_BOLTZ * temp) / (1.0 + a_he)                  # H nuclei per cm^3
    out, neutral = {}, {}
    for z, (logeps, chi, u1, u2, _) in ATOMS.items():
        scale = 1.0 if z == 1 else 10 ** feh
        eps = 10 ** (logeps - 12.0) * scale
        if z == 1:
            f1, f2 = fneutral_h, 1.0 - fneutral_h
        else:                                   # neutral, first and second ion (u_III taken as u_II)
            r1 = _saha_phi(temp, chi, 2.0 * u2 / u1) / pe
            r2 = _saha_phi(temp, SECOND_ION[z], 2.0) / pe
            f1 = 1.0 / (1.0 + r1 * (1.0 + r2))
            f2 = f1 * r1
        out[100 * z + 1] = eps * f1 / u1 / fneutral_h
        out[100 * z + 2] = eps * f2 / u2 / fneutral_h
        neutral[z] = eps * f1 * n_h                                    # cm^-3
    k_co = _dissociation_constant(temp, 608, ATOMS[6][2], ATOMS[8][2])
    n_c, n_o = neutral[6], neutral[8]
    for _ in range(20):                                                # C + O <-> CO
        n_co = n_c * n_o / k_co
        n_c = neutral[6] / (1.0 + n_o / k_co)
        n_o = neutral[8] / (1.0 + n_c / k_co)
    out[601] = out[601] * n_c / neutral[6]                      # the atoms CO leaves free
    out[801] = out[801] * n_o / neutral[8]
    neutral[6], neutral[8] = n_c, n_o
    for code, (za, zb, _, b_rot, omega, g_el, sym) in MOLECULES.items():
        k = _dissociation_constant(temp, code, ATOMS[za][2], ATOMS[zb][2])
        n_ab = neutral[za] * neutral[zb] / k
        out[code] = n_ab / _molecule_partition(temp, b_rot, omega, g_el, sym) / (fneutral_h * n_h)
    return out


def prepare_lines(lines):
    """The lines of ``lines`` whose species :data:`ATOMS` / :data:`MOLECULES` hold, with what
    :func:`line_opacity` needs of each; computed once per line list, not per photosphere.

    Parameters
    ----------
    lines : dict of ndarray (nline,)
        As :func:`desired.io.linelist.read_moog_linelist` returns (``wave``, ``species``,
        ``ep``, ``loggf``).

    Returns
    -------
    dict of ndarray (nkept,)
        ``wave`` (Å), ``ep`` (eV), ``loggf`` (with the isotopologue fraction, see
        :func:`_isotope_fractions`), ``key`` (:func:`species_populations`' keys), ``mass``
        (amu), ``ionisation`` (eV, of the line's stage; for the van der Waals width).
        H lines (:mod:`desired.stdmodels` computes them itself) and CO lines (infrared
        bands) are not kept.
    """
    keys, masses, ionisation, log_isotope = _line_species(np.asarray(lines["species"], dtype=float))
    known = keys >= 0
    return {"wave": lines["wave"][known], "ep": lines["ep"][known], "loggf": lines["loggf"][known] + log_isotope[known],
            "key": keys[known], "mass": masses[known], "ionisation": ionisation[known]}


def _line_species(species):
    """Integer keys and masses (amu) of MOOG species codes.

    Keys are ``100 Z + stage`` for atoms (stage 1 neutral, 2 first ion) and the MOOG code
    for molecules; -1 for species :data:`ATOMS` / :data:`MOLECULES` do not hold (and H,
    whose lines :mod:`desired.stdmodels` computes itself, and CO, whose bands lie in the IR).
    """
    major = np.floor(species + 1e-6).astype(int)
    stage = np.round((species - major) * 10).astype(int) + 1
    keys = np.full(len(species), -1)
    masses = np.ones(len(species))
    ionisation = np.full(len(species), 10.0)          # molecules: a generic value for the vdW width
    for z, row in ATOMS.items():
        if z == 1:
            continue
        sel = (major == z) & (stage <= 2)
        keys[sel] = 100 * z + stage[sel]
        masses[sel] = row[4]
        ionisation[sel] = np.where(stage[sel] == 1, row[1], SECOND_ION[z])
    log_isotope = np.zeros(len(species))
    for code, (za, zb, *_) in MOLECULES.items():
        if code == 608:
            continue
        sel = np.flatnonzero(major == code)
        keys[sel] = code
        masses[sel] = ATOMS[za][4] + ATOMS[zb][4]
        log_isotope[sel] = _isotope_fractions(species[sel])
    return keys, masses, ionisation, log_isotope


def _isotope_fractions(codes):
    """log10 of the product of the solar isotopic fractions named by MOOG molecule codes (0 if unnamed).

    The five decimals of a code are the two mass numbers, 3 + 2 digits (607.01214: 12, 14).
    """
    digits = np.round((codes - np.floor(codes)) * 1e5).astype(int)
    first, second = digits // 100, digits % 100
    table = np.ones(1000)
    for mass, fraction in ISOTOPES.items():
        table[mass] = fraction
    named = (first > 0) & (second > 0)
    return np.where(named, np.log10(table[first] * table[second]), 0.0)


def damping_width(lam, ep, ionisation, temp, pg):
    """Lorentz width γ (s^-1, FWHM in angular frequency) of lines at every depth: radiative + van der Waals.

    Radiative: the classical 0.22 / λ² (λ in cm).  Van der Waals: Unsöld's approximation
    ``log γ6 = 19.6 + 0.4 log C6 + log Pg − 0.7 log T`` with
    ``C6 = 0.3e-30 [1/(I − χ − χ_λ)² − 1/(I − χ)²]`` (Gray, ch. 11; I the ionisation energy
    of the line's stage, χ its lower excitation, χ_λ the photon energy, eV), times
    :data:`VDW_ENHANCEMENT`.

    Parameters
    ----------
    lam, ep, ionisation : ndarray (nline,)
        Å, eV, eV.
    temp, pg : ndarray (ndepth,)
        K, dyn cm^-2.

    Returns
    -------
    ndarray (ndepth, nline)
    """
    photon = EV_ANGSTROM / lam
    upper = np.maximum(ionisation - ep - photon, 0.5)          # autoionising upper levels: clipped
    lower = np.maximum(ionisation - ep, upper + 0.1)
    log_c6 = np.log10(0.3e-30 * (1.0 / upper ** 2 - 1.0 / lower ** 2))
    log_vdw = 19.6 + 0.4 * log_c6[None, :] + np.log10(pg)[:, None] - 0.7 * np.log10(temp)[:, None]
    return 0.22 / (lam[None, :] * 1e-8) ** 2 + VDW_ENHANCEMENT * 10 ** log_vdw


def line_opacity(wave, tau, temp, pe, pg, fneutral_h, feh, kcont, lines):
    """Opacity of every line of ``lines`` per neutral H atom (cm^2), shape (ndepth, nwave).

    Parameters
    ----------
    wave : ndarray (nwave,)
        Log-uniform vacuum wavelengths, Å.
    tau, temp, pe, pg, fneutral_h : ndarray (ndepth,)
        Depth structure (:func:`desired.stdmodels._structure`): τ at 5000 Å, K, dyn cm^-2, fraction.
    feh : float
    kcont : ndarray (ndepth, nwave)
        Continuous opacity per neutral H atom on ``wave`` (the line-selection reference).
    lines : dict of ndarray
        As :func:`prepare_lines` returns (or as :func:`desired.io.linelist.read_moog_linelist`
        returns: then prepared here, for this call only).
    """
    if "key" not in lines:
        lines = prepare_lines(lines)
    dlog = np.log10(wave[1] / wave[0])
    inside = (lines["wave"] > wave[0]) & (lines["wave"] < wave[-1])
    if not inside.any():
        return np.zeros((len(temp), len(wave)))
    lam, keys, ionisation = lines["wave"][inside], lines["key"][inside], lines["ionisation"][inside]
    ep, masses, loggf = lines["ep"][inside], lines["mass"][inside], lines["loggf"][inside]
    pops = species_populations(temp, pe, pg, fneutral_h, feh)
    codes, inverse = np.unique(keys, return_inverse=True)
    centre = np.clip(np.round((np.log10(lam) - np.log10(wave[0])) / dlog).astype(int), 0, len(wave) - 1)
    pix = lam * np.log(10) * dlog                                                    # Å
    theta = (5040.0 / temp)[:, None]

    def strength_of(sel, depths):
        pop = np.array([pops[c][depths] for c in codes]).T[:, inverse[sel]]     # (ndepth, nline)
        return (pop * 10 ** (-theta[depths] * ep[None, sel]) * SIGMA_LINE * 10 ** loggf[None, sel]
                * lam[None, sel] ** 2 / C_ANGSTROM * (1.0 - 10 ** (-theta[depths] * EV_ANGSTROM / lam[None, sel])))

    def doppler_of(sel, depths):
        therm = lam[None, sel] * np.sqrt(2 * K_BOLTZ * temp[depths, None] / (masses[None, sel] * AMU)
                                         + (VTURB * 1e5) ** 2) / C_CM
        return np.sqrt(therm ** 2 + (0.7 * pix[None, sel]) ** 2)

    # select on every 4th depth first (cheap), then keep the lines above ETA_MIN at any depth
    every = np.arange(0, len(temp), 4)
    allsel = np.arange(len(lam))
    eta0 = strength_of(allsel, every) / (np.sqrt(np.pi) * doppler_of(allsel, every)) / kcont[every][:, centre]
    sel = np.flatnonzero(eta0.max(axis=0) > ETA_MIN / 3)
    depths = np.arange(len(temp))
    strength = strength_of(sel, depths)                                              # cm^2 Å
    doppler = doppler_of(sel, depths)
    gamma = damping_width(lam[sel], ep[sel], ionisation[sel], temp, pg)               # s^-1
    lorentz = lam[None, sel] ** 2 * 1e-8 / (4 * np.pi * C_CM) * gamma             # HWHM Å
    kc = kcont[:, centre[sel]]
    keep = (strength / (np.sqrt(np.pi) * doppler) / kc).max(axis=0) > ETA_MIN
    # half window where the Lorentz wing falls to ETA_WING of the continuum, at least 4 Doppler widths
    reach = np.sqrt(strength * lorentz / np.pi / (ETA_WING * kc)).max(axis=0)
    half = np.clip(np.maximum(reach, 4 * doppler.max(axis=0)), 0, 40.0) / pix[sel]
    out = np.zeros((len(temp), len(wave)))
    ref = int(np.argmin(np.abs(np.log(tau / TAU_PROFILE))))
    lower = 0
    for width in SHARED_WINDOWS:                    # one profile shape at every depth
        cls = keep & (half > lower) & (half <= width)
        out += _deposit_shared(wave, centre[sel][cls], lam[sel][cls], strength[:, cls], doppler[ref, cls],
                               lorentz[ref, cls], width)
        lower = width
    width = lower
    while np.any(keep & (half > width)):            # strong lines: depth-dependent damping wings
        cls = np.flatnonzero(keep & (half > width) & (half <= 4 * width))
        width *= 4
        _deposit(out, wave, centre[sel][cls], lam[sel][cls], strength[:, cls], doppler[:, cls], lorentz[:, cls],
                 width)
    return out


def _deposit_shared(wave, centre, lam, strength, doppler, lorentz, half):
    """Opacity (ndepth, nwave) of lines whose profile shape is the same at every depth.

    One pseudo-Voigt per line (at the reference layer) over ``half`` pixels each side, the
    depth dependence carried by ``strength`` (ndepth, nline): a sparse product.
    """
    from scipy import sparse
    nwave = len(wave)
    offsets = np.arange(-half, half + 1)
    idx = centre[:, None] + offsets[None, :]
    valid = (idx >= 0) & (idx < nwave)
    idx = np.clip(idx, 0, nwave - 1)
    prof = _voigt_approx(wave[idx] - lam[:, None], doppler[:, None], lorentz[:, None]) * valid
    rows = np.repeat(np.arange(len(lam)), len(offsets))
    matrix = sparse.csr_matrix((prof.ravel(), (rows, idx.ravel())), shape=(len(lam), nwave))
    return np.asarray((matrix.T @ strength.T).T)


def _deposit(out, wave, centre, lam, strength, doppler, lorentz, half):
    """Add pseudo-Voigt profiles of ``half`` pixels each side to ``out`` (ndepth, nwave), in place.

    ``strength``, ``doppler`` and ``lorentz`` are (ndepth, nline): every depth has its own
    profile (the strong lines, whose damping wings change with pressure).
    """
    _deposit_kernel(out, wave, centre.astype(np.int64), lam, np.ascontiguousarray(strength),
                    np.ascontiguousarray(doppler), np.ascontiguousarray(lorentz), int(half))


@numba.njit(cache=True, nogil=True)
def _deposit_kernel(out, wave, centre, lam, strength, doppler, lorentz, half):
    """numba loop of :func:`_deposit`; the profile is :func:`desired.stdmodels._voigt_approx`'s.

    The Gaussian part is skipped beyond 12 of its σ (where it is below 1e-31 of its peak).
    """
    ndepth, nwave = out.shape
    sqrt_ln2 = np.sqrt(np.log(2.0))
    for d in range(ndepth):
        for j in range(len(centre)):
            fg = 2.0 * sqrt_ln2 * doppler[d, j]
            fl = 2.0 * lorentz[d, j]
            f = (fg ** 5 + 2.69269 * fg ** 4 * fl + 2.42843 * fg ** 3 * fl ** 2 + 4.47163 * fg ** 2 * fl ** 3
                 + 0.07842 * fg * fl ** 4 + fl ** 5) ** 0.2
            r = fl / f
            eta = 1.36603 * r - 0.47719 * r ** 2 + 0.11116 * r ** 3
            sg = f / (2.0 * np.sqrt(2.0 * np.log(2.0)))
            hw = f / 2.0
            wg = strength[d, j] * (1.0 - eta) / (np.sqrt(2 * np.pi) * sg)
            wl = strength[d, j] * eta * hw / np.pi
            lo = max(centre[j] - half, 0)
            hi = min(centre[j] + half, nwave - 1)
            for i in range(lo, hi + 1):
                dw = wave[i] - lam[j]
                x2 = (dw / sg) ** 2
                value = wl / (dw * dw + hw * hw)
                if x2 < 288.0:
                    value += wg * np.exp(-0.5 * x2)
                out[d, i] += value
