"""Sky, atmosphere, throughput and target spectra of the simulator.

All spectra are returned *bin-averaged* on a wavelength grid of bin centres with
constant width (0.8 Å for the extraction grids): continua are evaluated at bin
centres, emission/absorption lines are Gaussians integrated over each bin, so
narrow lines keep their exact flux.  Units: object fluxes in
1e-17 erg/s/cm²/Å, sky surface brightness in 1e-17 erg/s/cm²/Å/arcsec².

How the target spectra differ from the fit templates
----------------------------------------------------
Nothing here reads redrock templates, PCA bases or any stellar library:

* **ELG**: power-law continuum ``f_λ ∝ λ^β`` (β uniform in [-2.3, -1.3]) with a
  weak 4000 Å step, plus emission lines ([OII] doublet with a free ratio, Hβ,
  [OIII], Hα, [NII], [SII], Hγ, Hδ) whose ratios are drawn independently with
  broad scatter (e.g. [OIII]/Hβ log-normal over ~1 dex), velocity dispersion
  30-120 km/s.
* **LRG / BGS**: blackbody continuum (T 4200-6500 K) times a smooth 4000 Å break
  of random depth and Gaussian absorption features (Ca H&K, G band, Mg b, Na D,
  Balmer) of random depth broadened by 150-250 km/s; BGS add weak emission lines.
* **QSO**: power law ``f_ν ∝ ν^α`` (α ~ N(-0.5, 0.3)), broad lines (Lyα, NV, SiIV,
  CIV, CIII], MgII, Hγ, Hβ, Hα) with log-normal equivalent widths and widths of
  2500-7000 km/s FWHM, narrow [OIII], a Lyα forest as a log-normal optical-depth
  field around τ_eff(z) = 0.0018 (1+z)^3.92 and a Lyman-limit cut.
* **F standard stars**: blackbody of T_eff 5900-7000 K times Gaussian Balmer,
  Ca II and Na/Mg absorption features of random depth and width; radial velocity
  up to ±300 km/s.  The standard-star fitter's models will differ in shape.

Magnitudes are AB through top-hat-like g (4000-5500 Å), r (5600-7200 Å) and
z (8300-9800 Å) bands (simplified, documented here, not DECam curves).

Throughput (telescope + corrector + fiber + spectrograph + CCD, no atmosphere)
is the smooth approximate curve of simulator-research.md §1.4 times logistic
dichroic transitions at 5780 Å (b→r) and 7570 Å (r→z).  Point sources (stars,
QSOs) get a fiber-aperture fraction 0.60 (λ/6000)^0.1, galaxies 0.45 (λ/6000)^0.1.
Electrons per Å = F · 1e-17 · A · T · aperture · 10^(-0.4 k X) · t · λ / (hc).
"""
from __future__ import annotations

import functools
import os

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.special import ndtr

from ..maskbits import desi_target
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


def aperture_fraction(wave, point_source):
    """Fraction of a source's flux entering the fiber (1.1'' seeing, approx.)."""
    base = 0.60 if point_source else 0.45
    return base * (np.asarray(wave) / 6000.0) ** 0.1


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
FILTERS = {"G": (4000.0, 5500.0), "R": (5600.0, 7200.0), "Z": (8300.0, 9800.0)}
_PHOT_WAVE = np.arange(3600.0, 9900.0, 2.0)


def _blackbody(wave, teff):
    x = 1.43877e8 / (wave * teff)
    return wave ** -5 / np.expm1(np.clip(x, 1e-6, 700.0))


def draw_target(rng, kind):
    """Draw the generator parameters of one target.

    Parameters
    ----------
    rng : numpy.random.Generator
    kind : str
        ``ELG``, ``LRG``, ``QSO``, ``BGS``, ``STD`` or ``SKY``.

    Returns
    -------
    dict
        ``kind``, ``z``, ``spectype`` (GALAXY/QSO/STAR/SKY), ``subtype``, the
        normalising magnitude (``mag_band``, ``mag``) and the shape parameters.
    """
    p = {"kind": kind}
    if kind == "SKY":
        p.update(z=0.0, spectype="SKY", subtype="")
        return p
    if kind == "ELG":
        z = rng.uniform(0.6, 1.6)
        hb_oii = rng.uniform(0.25, 0.6)
        p.update(z=z, spectype="GALAXY", subtype="ELG", mag_band="G", mag=rng.uniform(22.3, 23.6),
                 beta=rng.uniform(-2.3, -1.3), d4000=rng.uniform(1.0, 1.2), sigma_v=rng.uniform(30, 120),
                 oii_flux=rng.lognormal(np.log(10.0), 0.5), oii_ratio=rng.uniform(0.7, 1.5),
                 hb_oii=hb_oii, oiii_hb=rng.lognormal(np.log(0.8), 0.6), ha_hb=rng.uniform(2.86, 4.0),
                 nii_ha=rng.uniform(0.05, 0.4), sii_ha=rng.uniform(0.1, 0.3))
    elif kind in ("LRG", "BGS"):
        if kind == "LRG":
            z, band, mag, teff = rng.uniform(0.4, 1.0), "Z", rng.uniform(19.3, 20.6), rng.uniform(4200, 5200)
        else:
            z, band, mag, teff = rng.uniform(0.05, 0.4), "R", rng.uniform(17.5, 19.5), rng.uniform(4500, 6500)
        p.update(z=z, spectype="GALAXY", subtype=kind, mag_band=band, mag=mag, teff=teff,
                 d4000=rng.uniform(1.3, 2.0) if kind == "LRG" else rng.uniform(1.1, 1.7),
                 sigma_v=rng.uniform(150, 250), absdepth=rng.uniform(0.5, 1.2),
                 em_ew=0.0 if kind == "LRG" else rng.lognormal(np.log(5.0), 0.7),
                 ha_hb=rng.uniform(2.86, 5.0), oiii_hb=rng.lognormal(0.0, 0.6))
    elif kind == "QSO":
        p.update(z=rng.uniform(0.9, 3.5), spectype="QSO", subtype="", mag_band="R", mag=rng.uniform(20.5, 22.3),
                 alpha=rng.normal(-0.5, 0.3), fwhm=rng.uniform(2500, 7000),
                 ew_scale=rng.lognormal(0.0, 0.3), forest_seed=int(rng.integers(2 ** 31)))
    elif kind == "STD":
        p.update(z=rng.uniform(-1e-3, 1e-3), spectype="STAR", subtype="F", mag_band="R", mag=rng.uniform(16.5, 18.8),
                 teff=rng.uniform(5900, 7000), balmer_depth=rng.uniform(0.35, 0.6), balmer_width=rng.uniform(6.0, 14.0),
                 metal_depth=rng.uniform(0.1, 0.4))
    else:
        raise ValueError(f"unknown target kind {kind!r}")
    return p


_ELG_LINES = lambda p: [  # noqa: E731  (rest vacuum wavelength, flux relative to [OII] total)
    (3727.09, 1.0 / (1 + p["oii_ratio"])), (3729.88, p["oii_ratio"] / (1 + p["oii_ratio"])),
    (4102.89, 0.26 * p["hb_oii"]), (4341.68, 0.47 * p["hb_oii"]), (4862.68, p["hb_oii"]),
    (4960.30, p["oiii_hb"] * p["hb_oii"] / 2.98), (5008.24, p["oiii_hb"] * p["hb_oii"]),
    (6549.86, p["nii_ha"] * p["ha_hb"] * p["hb_oii"] / 2.94), (6564.61, p["ha_hb"] * p["hb_oii"]),
    (6585.27, p["nii_ha"] * p["ha_hb"] * p["hb_oii"]),
    (6718.29, 0.55 * p["sii_ha"] * p["ha_hb"] * p["hb_oii"]), (6732.67, 0.45 * p["sii_ha"] * p["ha_hb"] * p["hb_oii"])]
_ABS_LINES = [(3934.78, 0.5, 6.0), (3969.59, 0.45, 6.0), (4305.6, 0.2, 10.0), (5176.7, 0.15, 12.0),
              (5895.6, 0.12, 8.0), (4862.68, 0.1, 6.0), (4102.89, 0.1, 6.0)]
_QSO_LINES = [(1215.67, 80.0, 1.0), (1240.81, 15.0, 1.0), (1399.8, 8.0, 1.2), (1549.06, 40.0, 1.0),
              (1908.73, 20.0, 1.2), (2799.49, 30.0, 1.0), (4341.68, 8.0, 1.0), (4862.68, 50.0, 1.0),
              (6564.61, 200.0, 1.0)]
_STAR_BALMER = [3890.17, 3971.20, 4102.89, 4341.68, 4862.68, 6564.61]
_STAR_METAL = [(3934.78, 1.0, 3.0), (3969.59, 0.6, 3.0), (5176.7, 0.4, 4.0), (5895.6, 0.3, 3.0),
               (8500.36, 0.6, 3.0), (8544.44, 0.8, 3.0), (8664.52, 0.7, 3.0)]


def _shape(p, wave, step):
    """Unnormalised observed-frame spectrum of parameters ``p`` (bin-averaged)."""
    z = p["z"]
    rest = wave / (1 + z)
    kind = p["kind"]
    if kind == "ELG":
        cont = (rest / 4000.0) ** p["beta"] * np.where(rest < 4000.0, 1.0 / p["d4000"], 1.0)
        cont = 1e-3 * cont
        lines = _ELG_LINES(p)
        cen = np.array([w for w, _ in lines]) * (1 + z)
        flux = np.array([f for _, f in lines]) * p["oii_flux"]
        sig = cen * p["sigma_v"] / C_KMS
        # line fluxes are absolute (1e-17 erg/s/cm²) before the magnitude scaling; keep EW sensible
        return cont, _bin_gauss(wave, step, cen, sig, flux)
    if kind in ("LRG", "BGS"):
        bb = _blackbody(rest, p["teff"])
        bb = bb / _blackbody(np.array([5500.0]), p["teff"])[0]
        brk = 1.0 / p["d4000"] + (1 - 1.0 / p["d4000"]) * ndtr((rest - 4000.0) / 60.0)
        cont = bb * brk
        absorb = np.ones_like(wave)
        for w0, depth, width in _ABS_LINES:
            sig = np.hypot(width, w0 * p["sigma_v"] / C_KMS) * (1 + z)
            absorb -= np.clip(depth * p["absdepth"], 0, 0.9) * np.exp(-0.5 * ((wave - w0 * (1 + z)) / sig) ** 2)
        cont = cont * np.clip(absorb, 0.05, None)
        em = np.zeros_like(wave)
        if p["em_ew"] > 0:
            lines = [(3728.5, 1.0), (4862.68, 0.5), (5008.24, 0.5 * p["oiii_hb"]), (6564.61, 0.5 * p["ha_hb"])]
            c5500 = 1.0
            cen = np.array([w for w, _ in lines]) * (1 + z)
            flux = np.array([f for _, f in lines]) * p["em_ew"] * c5500 * (1 + z)
            em = _bin_gauss(wave, step, cen, cen * 80.0 / C_KMS, flux)
        return cont, em
    if kind == "QSO":
        cont = (rest / 3000.0) ** (-2.0 - p["alpha"])
        cen = np.array([w for w, _, _ in _QSO_LINES]) * (1 + z)
        ew = np.array([e for _, e, _ in _QSO_LINES]) * p["ew_scale"]
        wfac = np.array([f for _, _, f in _QSO_LINES])
        c_at = (np.array([w for w, _, _ in _QSO_LINES]) / 3000.0) ** (-2.0 - p["alpha"])
        sig = cen * p["fwhm"] * wfac / 2.3548 / C_KMS
        em = _bin_gauss(wave, step, cen, sig, ew * c_at * (1 + z))
        em = em + _bin_gauss(wave, step, np.array([5008.24 * (1 + z)]), np.array([5008.24 * (1 + z) * 200 / C_KMS]),
                             np.array([10.0 * (5008.24 / 3000.0) ** (-2.0 - p["alpha"]) * (1 + z)]))
        total = cont + em
        # Lyman-alpha forest and Lyman limit
        forest = rest < 1215.67
        if np.any(forest):
            frng = np.random.default_rng(p["forest_seed"])
            zabs = wave / 1215.67 - 1.0
            tau_eff = 0.0018 * (1 + zabs) ** 3.92
            field = frng.normal(size=wave.size)
            kern = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
            field = np.convolve(field, kern / np.sqrt((kern ** 2).sum()), mode="same")
            tau = tau_eff * np.exp(1.0 * field - 0.5)
            total = np.where(forest, total * np.exp(-tau), total)
        total = np.where(rest < 912.0, total * 0.05, total)
        return total, np.zeros_like(wave)
    if kind == "STD":
        bb = _blackbody(rest, p["teff"]) / _blackbody(np.array([5500.0]), p["teff"])[0]
        absorb = np.ones_like(wave)
        for w0 in _STAR_BALMER:
            absorb -= p["balmer_depth"] * np.exp(-0.5 * ((rest - w0) / p["balmer_width"]) ** 2)
        for w0, d, wd in _STAR_METAL:
            absorb -= p["metal_depth"] * d * np.exp(-0.5 * ((rest - w0) / wd) ** 2)
        return bb * np.clip(absorb, 0.05, None), np.zeros_like(wave)
    raise ValueError(f"no spectrum for kind {kind!r}")


def ab_magnitude(wave, flux):
    """AB magnitudes of a spectrum (1e-17 erg/s/cm²/Å) in the simplified g, r, z bands."""
    out = {}
    fnu = flux * 1e-17 * wave ** 2 / 2.99792458e18
    for band, (lo, hi) in FILTERS.items():
        sel = (wave >= lo) & (wave <= hi)
        mean = np.trapezoid(fnu[sel] / wave[sel], wave[sel]) / np.trapezoid(1.0 / wave[sel], wave[sel])
        out[band] = -2.5 * np.log10(max(mean, 1e-40)) - 48.6
    return out


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
    scale = _normalisation(p)
    cont, em = _shape(p, wave, step)
    return scale * cont + em * (scale if p["kind"] != "ELG" else 1.0)


def _normalisation(p):
    """Continuum scale making the ``mag_band`` magnitude equal ``mag``."""
    cont, em = _shape(p, _PHOT_WAVE, 2.0)
    if p["kind"] == "ELG":
        # emission lines are absolute: solve the continuum scale for the magnitude target
        target = 10 ** (-0.4 * (p["mag"] + 48.6))
        lo, hi = FILTERS[p["mag_band"]]
        sel = (_PHOT_WAVE >= lo) & (_PHOT_WAVE <= hi)
        w = _PHOT_WAVE[sel]
        norm = np.trapezoid(1.0 / w, w)

        def fnu(f):
            return np.trapezoid(f[sel] * 1e-17 * w ** 2 / 2.99792458e18 / w, w) / norm
        c, e = fnu(cont), fnu(em)
        return max((target - e) / c, 0.02 * target / c)
    mags = ab_magnitude(_PHOT_WAVE, cont + em)
    return 10 ** (-0.4 * (p["mag"] - mags[p["mag_band"]]))


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
        out.append(p)
    return out


def electrons_per_flux(band, wave, exptime, airmass, point_source, data_dir=None):
    """Electrons per Å per unit flux (1e-17 erg/s/cm²/Å) through the atmosphere and fiber aperture."""
    wave = np.asarray(wave, dtype=np.float64)
    atm = 10 ** (-0.4 * extinction(wave, data_dir) * airmass)
    return (1e-17 * ins.TELESCOPE_AREA * throughput(band, wave) * atm
            * aperture_fraction(wave, point_source) * exptime * wave / HC)


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
