"""The standard-star model container (stdstars product)."""
from __future__ import annotations

import numpy as np


class StdStars:
    """Best-fit model spectra of the standard stars of one spectrograph.

    Parameters
    ----------
    wave : array, shape (nwave_model,)
        The stellar template wavelength grid, vacuum Angstrom (not a camera grid).
    flux : array, shape (nstd, nwave_model)
        Models in 1e-17 erg/s/cm2/Angstrom (extinction and Doppler shift applied).
    fibers : array of int, shape (nstd,)
        Fiber number of each star.
    metadata : astropy.table.Table
        One row per star (TARGETID, FIBER, LOGG, TEFF, FEH, CHI2DOF, REDSHIFT, ...).
    coeff : array, shape (nstd, ntemplate), optional
        Linear template weights.
    fibermap : astropy.table.Table, optional
        Fibermap rows of the standards.
    input_frames : astropy.table.Table, optional
        NIGHT, EXPID, CAMERA of the frames used.
    header : dict-like, optional
    """

    def __init__(self, wave, flux, fibers, metadata, coeff=None, fibermap=None, input_frames=None, header=None):
        self.wave = np.asarray(wave, dtype=np.float64)
        self.flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
        if self.flux.ndim != 2 or self.flux.shape[1] != self.wave.size:
            raise ValueError(f"flux must have shape (nstd, {self.wave.size}); got {self.flux.shape}")
        self.fibers = np.asarray(fibers, dtype=np.int64).ravel()
        if self.fibers.size != self.flux.shape[0]:
            raise ValueError(f"{self.fibers.size} fibers for {self.flux.shape[0]} models")
        if len(metadata) != self.fibers.size:
            raise ValueError(f"metadata has {len(metadata)} rows for {self.fibers.size} stars")
        self.metadata = metadata
        self.coeff = None if coeff is None else np.asarray(coeff, dtype=np.float64)
        self.fibermap = fibermap
        self.input_frames = input_frames
        self.header = dict(header) if header is not None else {}

    @property
    def nstd(self):
        """Number of standard stars."""
        return self.fibers.size


# --------------------------------------------------------------------------- selection
def select_standards(fibermap):
    """Rows of a fibermap that are usable standard stars.

    A standard carries DESI_TARGET STD_FAINT or STD_BRIGHT, or MWS_TARGET
    GAIA_STD_FAINT or GAIA_STD_BRIGHT (as desispec's ``isStdStar``; white dwarfs are
    not fitted), has OBJTYPE ``TGT``, FIBERSTATUS 0 and a positive r-band flux.

    Parameters
    ----------
    fibermap : astropy.table.Table

    Returns
    -------
    ndarray of int
        Row indices.
    """
    from .maskbits import desi_target, mws_target
    n = len(fibermap)
    cols = fibermap.colnames
    yes = np.zeros(n, dtype=bool)
    if "DESI_TARGET" in cols:
        yes |= (np.asarray(fibermap["DESI_TARGET"], dtype=np.int64) & desi_target.mask("STD_FAINT", "STD_BRIGHT")) != 0
    if "MWS_TARGET" in cols:
        yes |= (np.asarray(fibermap["MWS_TARGET"], dtype=np.int64)
                & mws_target.mask("GAIA_STD_FAINT", "GAIA_STD_BRIGHT")) != 0
    if "OBJTYPE" in cols:
        yes &= np.char.strip(np.asarray(fibermap["OBJTYPE"]).astype(str)) == "TGT"
    if "FIBERSTATUS" in cols:
        yes &= np.asarray(fibermap["FIBERSTATUS"]) == 0
    if "FLUX_R" in cols:
        yes &= np.asarray(fibermap["FLUX_R"], dtype=np.float64) > 0
    return np.flatnonzero(yes)


# --------------------------------------------------------------------------- spectral helpers
C_KMS = 299792.458


def pixel_edges(wave):
    """Pixel boundaries of a wavelength grid (midpoints, ends extrapolated), shape (nwave + 1,)."""
    wave = np.asarray(wave, dtype=np.float64)
    mid = 0.5 * (wave[1:] + wave[:-1])
    return np.concatenate([[2 * wave[0] - mid[0]], mid, [2 * wave[-1] - mid[-1]]])


def resample_spectra(src_wave, flux, dst_wave):
    """Average spectra sampled on ``src_wave`` over the pixels of ``dst_wave`` (flux conserving).

    Parameters
    ----------
    src_wave : array, shape (nsrc,)
        Increasing wavelengths (Angstrom) of the input samples.
    flux : array, shape (nsrc,) or (n, nsrc)
    dst_wave : array, shape (ndst,)
        Pixel centres of the output grid; pixels must lie inside ``src_wave``.

    Returns
    -------
    ndarray, shape (ndst,) or (n, ndst)
    """
    src_wave = np.asarray(src_wave, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    one = flux.ndim == 1
    flux = np.atleast_2d(flux)
    cum = np.zeros((flux.shape[0], src_wave.size))
    cum[:, 1:] = np.cumsum(0.5 * (flux[:, 1:] + flux[:, :-1]) * np.diff(src_wave), axis=1)
    edges = pixel_edges(dst_wave)
    if edges[0] < src_wave[0] or edges[-1] > src_wave[-1]:
        raise ValueError(f"output grid {edges[0]:.1f}-{edges[-1]:.1f} A outside the input {src_wave[0]:.1f}-{src_wave[-1]:.1f} A")
    idx = np.clip(np.searchsorted(src_wave, edges) - 1, 0, src_wave.size - 2)
    frac = (edges - src_wave[idx]) / (src_wave[idx + 1] - src_wave[idx])
    at_edges = cum[:, idx] * (1 - frac) + cum[:, idx + 1] * frac
    out = np.diff(at_edges, axis=1) / np.diff(edges)
    return out[0] if one else out


def convolve_band(rdata, spectra):
    """``R @ s`` for one resolution matrix (DESI diagonal storage) and many spectra.

    Parameters
    ----------
    rdata : array, shape (ndiag, nwave)
    spectra : array, shape (n, nwave)

    Returns
    -------
    ndarray, shape (n, nwave)
    """
    from .resolution import apply_resolution
    spectra = np.atleast_2d(spectra)
    return apply_resolution(np.broadcast_to(rdata, (spectra.shape[0],) + rdata.shape), spectra)


def _spline_basis(wave, spacing):
    """Cubic B-spline basis (nbasis, nwave) with knots every ``spacing`` Angstrom over ``wave``."""
    from scipy.interpolate import BSpline
    nk = max(int(np.ceil((wave[-1] - wave[0]) / spacing)), 1)
    inner = np.linspace(wave[0], wave[-1], nk + 1)
    knots = np.concatenate([[inner[0]] * 3, inner, [inner[-1]] * 3])
    return BSpline.design_matrix(np.clip(wave, inner[0], inner[-1]), knots, 3).toarray().T


def scaled_chi2(data, ivar, models, basis, basis_pairs=None):
    """chi2 of ``data ≈ (Σ_k a_k basis_k) · model`` for every model, the smooth factor fitted linearly.

    Parameters
    ----------
    data, ivar : arrays, shape (nwave,)
    models : array, shape (nmodel, nwave)
    basis : array, shape (nbasis, nwave)
    basis_pairs : array, shape (nbasis * nbasis, nwave), optional
        ``basis[k] * basis[l]`` (precomputed for speed).

    Returns
    -------
    chi2 : ndarray, shape (nmodel,)
    """
    nb = basis.shape[0]
    if basis_pairs is None:
        basis_pairs = (basis[:, None, :] * basis[None, :, :]).reshape(nb * nb, -1)
    normal = ((models ** 2) * ivar) @ basis_pairs.T
    normal = normal.reshape(-1, nb, nb)
    rhs = (models * (ivar * data)) @ basis.T
    ridge = 1e-10 * np.trace(normal, axis1=1, axis2=2)[:, None, None] * np.eye(nb) + 1e-300 * np.eye(nb)
    coef = np.linalg.solve(normal + ridge, rhs[..., None])[..., 0]
    return float(np.sum(ivar * data ** 2)) - np.einsum("mk,mk->m", rhs, coef)


# --------------------------------------------------------------------------- fitting one star
#: model used for the radial-velocity scan before the grid scan (a typical F-type halo standard)
RV_REFERENCE = (6250.0, 4.0, -1.0)


def _camera_models(grid, zshift, cam, flux=None):
    """Grid models Doppler-shifted by ``zshift``, averaged over the camera pixels and convolved with R."""
    flux = grid.flux if flux is None else flux
    lo, hi = cam["model_slice"]
    res = resample_spectra(grid.wave[lo:hi] * (1 + zshift), flux[:, lo:hi], cam["wave"])
    return convolve_band(cam["rdata"], res)


def _spectral_chi2(grid, zshift, cams, flux=None):
    """Sum over cameras of :func:`scaled_chi2`; returns (chi2 per model, number of pixels used)."""
    chi2, npix = 0.0, 0
    for cam in cams:
        models = _camera_models(grid, zshift, cam, flux)
        chi2 = chi2 + scaled_chi2(cam["flux"], cam["ivar"], models, cam["basis"], cam["basis_pairs"])
        npix += int(np.count_nonzero(cam["ivar"]))
    return np.atleast_1d(chi2), npix


def _scan_velocity(grid, imodel, cams, vmax, step):
    """Best velocity (km/s) of model ``imodel`` on a grid of ``step`` within ±vmax, refined by a parabola."""
    return _refine_velocity(grid, imodel, cams, 0.0, half=vmax, step=step)


def _color_chi2(model_nmgy, phot, sys_mag):
    """chi2 of the model g-r and r-z colours against the photometry (per model)."""
    chi2 = np.zeros(model_nmgy["R"].shape)
    for b1, b2 in (("G", "R"), ("R", "Z")):
        f1, f2 = phot[b1], phot[b2]
        if not (f1 > 0 and f2 > 0):
            continue
        data = -2.5 * np.log10(f1 / f2)
        err2 = sys_mag ** 2 + sum((1.0857 / (f * np.sqrt(phot[f"IVAR_{b}"]))) ** 2 if phot[f"IVAR_{b}"] > 0 else 0.0
                                  for f, b in ((f1, b1), (f2, b2)))
        model = -2.5 * np.log10(model_nmgy[b1] / model_nmgy[b2])
        chi2 += (model - data) ** 2 / err2
    return chi2


def _color_window(model_nmgy, phot, delta_color):
    """Models whose g-r and r-z lie within ``delta_color`` of the photometry (all when none does)."""
    near = np.ones(model_nmgy["R"].shape, dtype=bool)
    for b1, b2 in (("G", "R"), ("R", "Z")):
        if phot[b1] > 0 and phot[b2] > 0:
            data = -2.5 * np.log10(phot[b1] / phot[b2])
            near &= np.abs(-2.5 * np.log10(model_nmgy[b1] / model_nmgy[b2]) - data) < delta_color
    return near if np.any(near) else np.ones_like(near)


def fit_star(grid, cams, phot, ebv, *, vmax=600.0, color_sys=0.03, delta_color=0.1):
    """Fit one standard star with the model grid (b, r, z jointly).

    The spectral chi2 of every model is computed after multiplying the model by a
    smooth cubic spline per camera fitted linearly (so the fit is insensitive to the
    unknown throughput and uses the absorption lines); the g-r and r-z colours of the
    reddened model are compared with the photometry.  The spectral chi2 is divided by
    its best chi2/dof (model systematics) before the colour chi2 is added.

    Parameters
    ----------
    grid : desired.stdmodels.ModelGrid
    cams : list of dict
        Per camera: ``wave``, ``flux``, ``ivar`` (nwave,), ``rdata`` (ndiag, nwave),
        ``basis`` (nbasis, nwave); flat-fielded, sky-subtracted electrons.
    phot : dict
        ``G``, ``R``, ``Z`` fluxes (nanomaggies) and ``IVAR_G``... (their ivar).
    ebv : float
        Galactic E(B-V) (SFD scale).
    vmax : float
        Radial-velocity search range, km/s.
    color_sys : float
        Colour uncertainty (mag) added in quadrature (photometric calibration and model colours).
    delta_color : float
        Only models whose g-r and r-z are within ``delta_color`` mag of the photometry
        compete (desispec's colour preselection); all models when none is.

    Returns
    -------
    dict
        ``imodel``, ``teff``, ``logg``, ``feh``, ``velocity`` (km/s), ``chi2dof``,
        ``model_nmgy`` (dict of the reddened best model's unscaled fluxes), ``chi2_color``.
    """
    from .dust import mw_transmission
    from .photometry import decam_nanomaggies
    ref = int(np.argmin(np.abs(np.log(grid.teff / RV_REFERENCE[0])) * 10
                        + np.abs(grid.logg - RV_REFERENCE[1]) + np.abs(grid.feh - RV_REFERENCE[2])))
    vel = _scan_velocity(grid, ref, cams, vmax, 40.0)
    chi2, npix = _spectral_chi2(grid, vel / C_KMS, cams)
    nbasis = sum(c["basis"].shape[0] for c in cams)
    dof = max(npix - nbasis - 1, 1)
    nmgy = decam_nanomaggies(grid.wave, grid.flux * mw_transmission(grid.wave, ebv))
    col = _color_chi2(nmgy, phot, color_sys)
    near = _color_window(nmgy, phot, delta_color)
    total = np.where(near, chi2 / max(chi2[near].min() / dof, 1.0) + col, np.inf)
    best = int(np.argmin(total))
    vel = _refine_velocity(grid, best, cams, vel)
    chi2_best = _spectral_chi2(grid, vel / C_KMS, cams, grid.flux[best:best + 1])[0][0]
    return {"imodel": best, "teff": float(grid.teff[best]), "logg": float(grid.logg[best]),
            "feh": float(grid.feh[best]), "velocity": vel, "chi2dof": float(chi2_best / dof),
            "model_nmgy": {k: float(v[best]) for k, v in nmgy.items()}, "chi2_color": float(col[best])}


def _refine_velocity(grid, imodel, cams, vel0, half=50.0, step=5.0):
    """Radial velocity of the best model on a fine grid around ``vel0``."""
    vel = np.arange(vel0 - half, vel0 + half + step / 2, step)
    one = grid.flux[imodel:imodel + 1]
    chi2 = np.array([_spectral_chi2(grid, v / C_KMS, cams, one)[0][0] for v in vel])
    k = int(np.argmin(chi2))
    if 0 < k < vel.size - 1:
        c0, c1, c2 = chi2[k - 1:k + 2]
        den = c0 - 2 * c1 + c2
        if den > 0:
            return float(vel[k] + 0.5 * step * (c0 - c2) / den)
    return float(vel[k])


# --------------------------------------------------------------------------- one spectrograph
def _camera_data(frame, row, knot_spacing, edge_trim):
    """Per-camera inputs of :func:`fit_star` for spectrum ``row`` of ``frame``."""
    wave = frame.wave
    ivar = np.where(frame.mask[row] == 0, frame.ivar[row], 0.0)
    ivar = np.where((wave < wave[0] + edge_trim) | (wave > wave[-1] - edge_trim), 0.0, ivar)
    basis = _spline_basis(wave, knot_spacing)
    pairs = (basis[:, None, :] * basis[None, :, :]).reshape(basis.shape[0] ** 2, -1)
    return {"wave": wave, "flux": frame.flux[row], "ivar": ivar, "rdata": frame.resolution_data[row],
            "basis": basis, "basis_pairs": pairs}


def _attach_model_slice(cams, grid, vmax):
    """Add to each camera the index range of the model grid that covers it at any velocity within ±vmax."""
    pad = 1.0 + 1.5 * vmax / C_KMS
    for cam in cams:
        lo = int(np.searchsorted(grid.wave, pixel_edges(cam["wave"])[0] / pad)) - 2
        hi = int(np.searchsorted(grid.wave, pixel_edges(cam["wave"])[-1] * pad)) + 2
        if lo < 0 or hi > grid.wave.size:
            raise ValueError(f"model grid {grid.wave[0]:.0f}-{grid.wave[-1]:.0f} A does not cover "
                             f"{cam['wave'][0]:.0f}-{cam['wave'][-1]:.0f} A")
        cam["model_slice"] = (lo, hi)
    return cams


def _median_snr(cam):
    good = cam["ivar"] > 0
    return float(np.median(cam["flux"][good] * np.sqrt(cam["ivar"][good]))) if np.any(good) else 0.0


def _star_model(grid, fit, ebv, phot, color_correct=True):
    """Best model on the grid wavelengths: Doppler-shifted, reddened, scaled to the r-band flux."""
    from .dust import mw_transmission
    from .photometry import decam_nanomaggies
    z = fit["velocity"] / C_KMS
    model = np.interp(grid.wave, grid.wave * (1 + z), grid.flux[fit["imodel"]].astype(np.float64))
    model = model * mw_transmission(grid.wave, ebv)
    if color_correct:
        model = match_colors(grid.wave, model, phot)
    return model * phot["R"] / decam_nanomaggies(grid.wave, model)["R"]


def match_colors(wave, flux, phot, pivot=6200.0, niter=6, clip=(3300.0, 11000.0)):
    """Multiply a spectrum by ``exp(a x + b x^2)``, ``x = ln(λ/pivot)``, so that its g-r and r-z match ``phot``.

    The smallest smooth change of the model's broad-band shape that makes it agree
    with the star's photometry (one term when only one colour is measured).

    Parameters
    ----------
    wave, flux : arrays, shape (nwave,)
    phot : dict
        ``G``, ``R``, ``Z`` fluxes (any common unit); non-positive values are ignored.
    pivot : float
        Angstrom where the correction is 1.
    niter : int
        Newton iterations.
    clip : (float, float)
        Wavelength range (Å) outside which the correction is held constant (the
        default covers the model grid; holding it below the g band was measured worse:
        b-camera calibration rms below 4100 Å 6.8 % instead of 5.7 % on a petal night).

    Returns
    -------
    ndarray, shape (nwave,)
    """
    from .photometry import decam_nanomaggies
    pairs = [(b1, b2) for b1, b2 in (("G", "R"), ("R", "Z")) if phot[b1] > 0 and phot[b2] > 0]
    if not pairs:
        return flux
    x = np.log(np.clip(wave, clip[0], clip[1]) / pivot)
    target = np.array([-2.5 * np.log10(phot[b1] / phot[b2]) for b1, b2 in pairs])
    terms = [x, x ** 2][:len(pairs)]

    def colors(p):
        f = decam_nanomaggies(wave, flux * np.exp(sum(c * t for c, t in zip(p, terms))))
        return np.array([-2.5 * np.log10(f[b1] / f[b2]) for b1, b2 in pairs])

    p = np.zeros(len(pairs))
    for _ in range(niter):
        c0 = colors(p)
        jac = np.array([(colors(p + 1e-3 * np.eye(len(p))[k]) - c0) / 1e-3 for k in range(len(p))]).T
        step = np.linalg.solve(jac, target - c0)
        p = p + step
        if np.max(np.abs(step)) < 1e-4:
            break
    return flux * np.exp(sum(c * t for c, t in zip(p, terms)))


def fit_stdstars(frames, grid=None, *, knot_spacing=200.0, edge_trim=30.0, vmax=600.0, color_sys=0.03,
                 delta_color=0.1, color_correct=True):
    """Fit the standard stars of one spectrograph and exposure.

    Parameters
    ----------
    frames : dict
        Band (``b``, ``r``, ``z``) -> :class:`desired.frame.Frame`, flat-fielded and
        sky-subtracted (electron/Angstrom), same exposure and spectrograph, with
        resolution data and a fibermap (FIBER, DESI_TARGET/MWS_TARGET, OBJTYPE,
        FIBERSTATUS, FLUX_G/R/Z, FLUX_IVAR_G/R/Z, EBV).
    grid : desired.stdmodels.ModelGrid, optional
        Models to fit; :func:`desired.stdmodels.model_grid` defaults when omitted.
    knot_spacing : float
        Knot spacing (Angstrom) of the smooth per-camera factor of the line fit.
    edge_trim : float
        Angstrom ignored at both ends of each camera.
    vmax : float
        Radial-velocity search range, km/s.
    color_sys : float
        Systematic colour uncertainty, mag.
    delta_color : float
        Colour preselection window of the models, mag (see :func:`fit_star`).
    color_correct : bool
        Bend each best model smoothly to the star's g-r and r-z (:func:`match_colors`).

    Returns
    -------
    StdStars
        One model per fitted star (possibly none), in 1e-17 erg/s/cm²/Å on the model grid.
    """
    import logging

    from .stdmodels import model_grid
    from .threads import single_threaded_blas
    log = logging.getLogger(__name__)
    grid = model_grid() if grid is None else grid
    bands = [b for b in ("b", "r", "z") if b in frames]
    if not bands:
        raise ValueError("fit_stdstars needs at least one of the b, r, z frames")
    fibermap = frames[bands[0]].fibermap
    if fibermap is None:
        raise ValueError(f"camera {frames[bands[0]].camera}: frame has no fibermap")
    rows, flux, meta = select_standards(fibermap), [], []
    for row in rows:
        fiber = int(fibermap["FIBER"][row])
        cams = []
        for b in bands:
            idx = np.flatnonzero(frames[b].fibers == fiber)
            if idx.size:
                cams.append(_camera_data(frames[b], int(idx[0]), knot_spacing, edge_trim))
        cams = _attach_model_slice(cams, grid, vmax + 100.0)
        if not any(np.any(c["ivar"] > 0) for c in cams):
            log.warning("standard star on fiber %d has no valid pixel; skipped", fiber)
            continue
        phot, ebv = _photometry(fibermap, row)
        with single_threaded_blas():
            fit = fit_star(grid, cams, phot, ebv, vmax=vmax, color_sys=color_sys, delta_color=delta_color)
        flux.append(_star_model(grid, fit, ebv, phot, color_correct))
        snr = {b: _median_snr(c) for b, c in zip(bands, cams)}
        meta.append(_metadata_row(fibermap, row, fit, phot, ebv, snr))
        log.info("fiber %d: Teff %.0f logg %.1f [Fe/H] %.1f v %.0f km/s chi2/dof %.2f", fiber, fit["teff"],
                 fit["logg"], fit["feh"], fit["velocity"], fit["chi2dof"])
    return _assemble_stdstars(grid, flux, meta, fibermap, [frames[b] for b in bands])


def _photometry(fibermap, row):
    """({G, R, Z, IVAR_G, IVAR_R, IVAR_Z}, EBV) of fibermap row ``row`` (ivar 0 / EBV 0 when absent)."""
    cols = fibermap.colnames
    phot = {k: float(fibermap[f"FLUX_{k}"][row]) for k in "GRZ"}
    phot.update({f"IVAR_{k}": float(fibermap[f"FLUX_IVAR_{k}"][row]) if f"FLUX_IVAR_{k}" in cols else 0.0
                 for k in "GRZ"})
    return phot, (float(fibermap["EBV"][row]) if "EBV" in cols else 0.0)


def _assemble_stdstars(grid, flux, meta, fibermap, frames):
    """StdStars of the fitted stars (METADATA, FIBERMAP rows, INPUT_FRAMES, header)."""
    from astropy.table import Table
    names = _METADATA_COLUMNS
    metadata = Table(rows=[tuple(m[c] for c in names) for m in meta], names=names) if meta else \
        Table(names=names, dtype=[np.int64, np.int32] + [np.float64] * (len(names) - 2))
    fibers = np.array([m["FIBER"] for m in meta], dtype=np.int64)
    std_rows = [int(np.flatnonzero(fibermap["FIBER"] == f)[0]) for f in fibers]
    frames_used = Table({"NIGHT": [int(f.header.get("NIGHT", 0)) for f in frames],
                         "EXPID": [int(f.header.get("EXPID", 0)) for f in frames],
                         "CAMERA": [str(f.camera or "") for f in frames]})
    header = {k: frames[0].header[k] for k in ("NIGHT", "EXPID", "TILEID", "EXPTIME") if k in frames[0].header}
    header["SPECGRPH"] = int(frames[0].camera[1:]) if frames[0].camera else 0
    header["STDMODEL"] = "desired.stdmodels LTE grid"
    return StdStars(grid.wave, np.array(flux).reshape(len(flux), grid.wave.size), fibers, metadata,
                    fibermap=fibermap[std_rows], input_frames=frames_used, header=header)


_METADATA_COLUMNS = ("TARGETID", "FIBER", "LOGG", "TEFF", "FEH", "CHI2DOF", "REDSHIFT", "DATA_G-R", "MODEL_G-R",
                     "DATA_R-Z", "MODEL_R-Z", "EBV", "CHI2COLOR", "BLUE_SNR", "RED_SNR", "NIR_SNR")


def _metadata_row(fibermap, row, fit, phot, ebv, snr):
    """One METADATA row (dict) of a fitted star."""
    def color(f1, f2):
        return float(-2.5 * np.log10(f1 / f2)) if f1 > 0 and f2 > 0 else np.nan
    m = fit["model_nmgy"]
    return {"TARGETID": int(fibermap["TARGETID"][row]) if "TARGETID" in fibermap.colnames else -1,
            "FIBER": int(fibermap["FIBER"][row]), "LOGG": fit["logg"], "TEFF": fit["teff"], "FEH": fit["feh"],
            "CHI2DOF": fit["chi2dof"], "REDSHIFT": fit["velocity"] / C_KMS,
            "DATA_G-R": color(phot["G"], phot["R"]), "MODEL_G-R": color(m["G"], m["R"]),
            "DATA_R-Z": color(phot["R"], phot["Z"]), "MODEL_R-Z": color(m["R"], m["Z"]), "EBV": ebv,
            "CHI2COLOR": fit["chi2_color"], "BLUE_SNR": snr.get("b", 0.0), "RED_SNR": snr.get("r", 0.0),
            "NIR_SNR": snr.get("z", 0.0)}
