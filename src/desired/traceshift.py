"""Trace shifts of a flat or science exposure relative to a PSF.

x shifts come from the cross-dispersion profiles: blocks of rows along every
trace are fitted with the PSF's cross-dispersion profile (the spot marginalised
over rows, pixel-integrated) moved by ``dx``.  y (wavelength) shifts come from
sky emission lines (the fiber's boxcar spectrum around each line fitted with the
PSF's along-dispersion profile moved by ``dy`` plus a local background) or from
the edges of a flat-lamp continuum at known wavelengths (the boxcar spectrum
fitted with the cumulative along-dispersion profile).  Both sets of measurements
are fitted with a low-order Legendre polynomial in fiber and wavelength, and the
result is added to the PSF's trace coefficients.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
from numpy.polynomial import legendre

from .psf import hermite_pixel_integrals, reduced_wavelength

log = logging.getLogger(__name__)

#: provisional bright night-sky emission lines, vacuum Angstrom (O I, Na D, O I, OH bands)
SKY_LINES = np.array([5578.89, 5891.58, 5897.56, 6302.05, 6365.54, 6865.19, 7278.35, 7318.39,
                      7342.94, 7794.11, 7823.75, 7915.85, 7966.03, 8401.76, 8432.56, 8829.57,
                      8887.44, 8921.94, 8945.29, 9377.03, 9442.92, 9792.50])


@dataclasses.dataclass
class ShiftModel:
    """A smooth 2-D shift model: Legendre series in reduced fiber index and wavelength.

    Attributes
    ----------
    coef : ndarray, shape (nfib_deg + 1, nwave_deg + 1)
    nfiber : int
        Fibers of the PSF (fiber index is reduced over [0, nfiber - 1]).
    wavemin, wavemax : float
        Wavelength domain (the PSF's trace domain).
    rms : float
        Weighted rms of the measurements about the model, pixels.
    nmeas : int
        Measurements used.
    """

    coef: np.ndarray
    nfiber: int
    wavemin: float
    wavemax: float
    rms: float = 0.0
    nmeas: int = 0

    def __call__(self, fiber, wave):
        """Shift (pixels) at fibers ``fiber`` and wavelengths ``wave`` (broadcast)."""
        f = _reduced_fiber(fiber, self.nfiber)
        u = reduced_wavelength(wave, self.wavemin, self.wavemax)
        f, u = np.broadcast_arrays(f, u)
        return legendre.legval2d(f, u, self.coef)


def _reduced_fiber(fiber, nfiber):
    return 2.0 * np.asarray(fiber, dtype=np.float64) / max(nfiber - 1, 1) - 1.0


def _profile(psf, fiber, wave, center, pixels, axis):
    """Marginal spot profile at ``pixels`` [n, npix]: summed over rows (``axis='x'``) or columns (``'y'``).

    Integrating the Gauss-Hermite core over the other axis keeps only its degree-0
    terms (``∫ He_j g = 0`` for ``j ≥ 1``), so the profile is Σ_i GH-i-0 I_i (x) or
    Σ_j GH-0-j I_j (y).
    """
    u = reduced_wavelength(wave, psf.param_wavemin, psf.param_wavemax)

    def value(name):
        c = psf.params[name]
        return np.einsum("nk,nk->n", legendre.legvander(u, c.shape[1] - 1), c[fiber])

    if axis == "x":
        sig, degree, names = value("GHSIGX"), psf.ghdegx, [f"GH-{i}-0" for i in range(psf.ghdegx + 1)]
    else:
        sig, degree, names = value("GHSIGY"), psf.ghdegy, [f"GH-0-{j}" for j in range(psf.ghdegy + 1)]
    edges = (pixels[:, :1] + np.arange(pixels.shape[1] + 1)[None, :] - 0.5 - center[:, None]) / sig[:, None]
    ints = hermite_pixel_integrals(edges, degree)
    coef = np.stack([value(name) for name in names], axis=1)
    return np.einsum("ni,nip->np", coef, ints)


def _linear_fit(data, weight, base):
    """Weighted linear least squares per row of ``data ≈ Σ_k c_k base_k``.

    Parameters
    ----------
    data, weight : array, shape (n, npix)
    base : array, shape (n, k, npix)

    Returns
    -------
    coef : ndarray, shape (n, k)
    resid : ndarray, shape (n, npix)
    """
    a_mat = np.einsum("nkp,np,nlp->nkl", base, weight, base) + 1e-12 * np.eye(base.shape[1])
    coef = np.linalg.solve(a_mat, np.einsum("nkp,np,np->nk", base, weight, data)[..., None])[..., 0]
    return coef, data - np.einsum("nk,nkp->np", coef, base)


def _gauss_newton_shift(data, weight, model_fn, nbasis, niter=5, h=0.01, shift0=None, basis=None):
    """Fit ``data ≈ Σ_k a_k B_k + amp * model(shift)`` per row of ``data`` by Gauss-Newton.

    Parameters
    ----------
    data, weight : array, shape (n, npix)
    model_fn : callable
        ``model_fn(shift [n]) -> (n, npix)`` profile moved by ``shift``.
    nbasis : int
        Extra linear background terms: 0 (none), 1 (constant), 2 (constant and slope).
    shift0 : array, shape (n,), optional
        Starting shifts (0 by default).
    basis : array, shape (n, nextra, npix), optional
        Further fixed linear terms (not moved by the shift).

    Returns
    -------
    shift, shift_err, amp : ndarray, shape (n,)
    """
    n = data.shape[0]
    shift = np.zeros(n) if shift0 is None else np.array(shift0, dtype=np.float64)
    err = np.full(n, np.inf)
    amp = np.zeros(n)
    for _ in range(niter):
        m0 = model_fn(shift)
        dm = (model_fn(shift + h) - model_fn(shift - h)) / (2 * h)
        cols = [m0]
        if nbasis >= 1:
            cols.append(np.ones_like(m0))
        if nbasis >= 2:
            cols.append(np.broadcast_to(np.linspace(-1.0, 1.0, m0.shape[1]), m0.shape))
        base = np.stack(cols, axis=1)                                  # [n, nb, npix]
        if basis is not None:
            base = np.concatenate([base, basis], axis=1)
        lin, resid = _linear_fit(data, weight, base)              # linear part at the current shift
        amp = lin[:, 0]
        jac = np.concatenate([base, (amp[:, None] * dm)[:, None, :]], axis=1)
        mat = np.einsum("nkp,np,nlp->nkl", jac, weight, jac) + 1e-12 * np.eye(jac.shape[1])
        vec = np.einsum("nkp,np,np->nk", jac, weight, resid)
        try:
            cov = np.linalg.inv(mat)
        except np.linalg.LinAlgError:
            cov = np.linalg.pinv(mat)
        step = np.einsum("nkl,nl->nk", cov, vec)
        shift = shift + np.clip(step[:, -1], -0.5, 0.5)
        err = np.sqrt(np.clip(cov[:, -1, -1], 0, None))
    return shift, err, amp


def measure_x_shifts(image, psf, row_step=40, half_block=4, half_width=3, min_snr=20.0, avoid_wave=None):
    """Measure cross-dispersion shifts along every trace.

    Parameters
    ----------
    image : desired.image.Image
    psf : GaussHermitePSF
    row_step : int
        Rows between measurements along a trace.
    half_block : int
        Rows summed on each side of a measurement row.
    half_width : int
        Columns fitted on each side of the trace.
    min_snr : float
        Measurements whose profile amplitude is below this S/N are dropped.
    avoid_wave : array, optional
        Wavelengths of emission lines: blocks within 5 rows of them are skipped (a
        partly covered tilted spot would bias the cross-dispersion centroid).

    Returns
    -------
    fiber, wave, dx, dx_err : ndarray, shape (nmeas,)
    """
    ny, nx = image.shape
    ivar = image.good_ivar()
    var = np.where(ivar > 0, 1.0 / np.where(ivar > 0, ivar, 1.0), 0.0)
    rows = np.arange(half_block + row_step // 2, ny - half_block, row_step)
    fib, wav, xc = [], [], []
    for f in range(psf.nfiber):
        w = psf.wavelength(f, rows)
        inside = (w > psf.wavemin) & (w < psf.wavemax)
        fib.append(np.full(inside.sum(), f))
        wav.append(w[inside])
        xc.append(psf.x(f, w[inside]))
    fib, wav, xc = np.concatenate(fib), np.concatenate(wav), np.concatenate(xc)
    yrow = np.rint(psf.y(fib, wav)).astype(np.int64)
    c0 = np.rint(xc).astype(np.int64) - half_width
    cols = c0[:, None] + np.arange(2 * half_width + 1)[None, :]
    ok = (cols[:, 0] >= 0) & (cols[:, -1] < nx) & (yrow - half_block >= 0) & (yrow + half_block < ny)
    if avoid_wave is not None and len(avoid_wave):
        yline = psf.y(fib[:, None], np.asarray(avoid_wave, dtype=np.float64)[None, :])
        ok &= ~(np.abs(yline - yrow[:, None]) < half_block + 5).any(axis=1)
    fib, wav, xc, yrow, cols = fib[ok], wav[ok], xc[ok], yrow[ok], cols[ok]
    block = yrow[:, None] + np.arange(-half_block, half_block + 1)[None, :]
    data = image.pix[block[:, :, None], cols[:, None, :]].sum(axis=1)
    v = var[block[:, :, None], cols[:, None, :]]
    dead = (ivar[block[:, :, None], cols[:, None, :]] == 0).any(axis=1)
    weight = np.where(dead, 0.0, 1.0 / np.maximum(v.sum(axis=1), 1e-6))
    dx, err, amp = _gauss_newton_shift(data, weight, lambda s: _profile(psf, fib, wav, xc + s, cols, "x"), 0)
    good = np.isfinite(err) & (err > 0) & (amp > 0)
    model = _profile(psf, fib, wav, xc + dx, cols, "x")
    amp_err = 1.0 / np.sqrt(np.maximum((weight * model ** 2).sum(axis=1), 1e-30))
    good &= amp / amp_err > min_snr
    return fib[good], wav[good], dx[good], err[good]


def _variance(image):
    """Pixel variance (0 where the pixel is unusable) and the usable-pixel ivar, [ny, nx]."""
    ivar = image.good_ivar()
    return np.where(ivar > 0, 1.0 / np.where(ivar > 0, ivar, 1.0), 0.0), ivar


def _boxcar(image, psf, fiber, rows, half_width=3, variance=None):
    """Sum of the pixels within ``half_width`` columns of the trace, and its variance, per row.

    Rows with a masked pixel inside the box get variance 0 (weight 0 downstream).
    """
    ny, nx = image.shape
    var, ivar = variance if variance is not None else _variance(image)
    x = psf.x(fiber, psf.wavelength(fiber, rows))
    cols = np.rint(x).astype(np.int64)[:, None] + np.arange(-half_width, half_width + 1)[None, :]
    cols = np.clip(cols, 0, nx - 1)
    masked = (ivar[rows[:, None], cols] == 0).any(axis=1)
    return image.pix[rows[:, None], cols].sum(axis=1), np.where(masked, 0.0, var[rows[:, None], cols].sum(axis=1))


def measure_y_shifts_lines(image, psf, line_wave, half_window=6, min_snr=10.0):
    """Measure wavelength-direction shifts from emission lines (sky or arc).

    Parameters
    ----------
    image : desired.image.Image
    psf : GaussHermitePSF
    line_wave : array
        Vacuum wavelengths of isolated emission lines, Angstrom.
    half_window : int
        Rows fitted on each side of a line.
    min_snr : float

    Returns
    -------
    fiber, wave, dy, dy_err : ndarray, shape (nmeas,)
    """
    ny = image.shape[0]
    line_wave = np.asarray(line_wave, dtype=np.float64)
    line_wave = line_wave[(line_wave > psf.wavemin) & (line_wave < psf.wavemax)]
    fib, wav, data, weight, rowsel, yc = [], [], [], [], [], []
    all_rows = np.arange(ny)
    variance = _variance(image)
    for f in range(psf.nfiber):
        spec, var = _boxcar(image, psf, f, all_rows, variance=variance)
        for lw in line_wave:
            y0 = float(np.ravel(psf.y(f, lw))[0])
            r0 = int(np.rint(y0)) - half_window
            if r0 < 0 or r0 + 2 * half_window >= ny:
                continue
            rr = np.arange(r0, r0 + 2 * half_window + 1)
            fib.append(f)
            wav.append(lw)
            yc.append(y0)
            data.append(spec[rr])
            weight.append(np.where(var[rr] > 0, 1.0 / np.where(var[rr] > 0, var[rr], 1.0), 0.0))
            rowsel.append(rr)
    if not fib:
        return (np.zeros(0, dtype=np.int64),) + (np.zeros(0),) * 3
    fib, wav, yc = np.array(fib), np.array(wav), np.array(yc)
    data, weight, rowsel = np.array(data), np.array(weight), np.array(rowsel)
    dy, err, amp = _gauss_newton_shift(data, weight, lambda s: _profile(psf, fib, wav, yc + s, rowsel, "y"), 1)
    good = np.isfinite(err) & (err > 0) & (amp > 0) & (np.abs(dy) < half_window - 2)
    model = _profile(psf, fib, wav, yc + dy, rowsel, "y")
    amp_err = 1.0 / np.sqrt(np.maximum((weight * model ** 2).sum(axis=1), 1e-30))
    good &= amp / amp_err > min_snr
    return fib[good], wav[good], dy[good], err[good]


def _template_rows(psf, fiber, spot_wave, spot_flux, ny, step):
    """Template spots of one fiber deposited on sub-row bins of width ``step``.

    Each spot's flux is split linearly between the two bins around its row, which
    keeps every line's centroid.

    Returns
    -------
    centres : ndarray, shape (nbin,)
        Bin centres, CCD rows (``-0.5 + (k + 0.5) * step``).
    flux : ndarray, shape (nbin,)
        Template flux per bin (0 outside the trace's wavelength range).
    """
    nbin = int(np.ceil(ny / step))
    centres = -0.5 + (np.arange(nbin) + 0.5) * step
    inside = (spot_wave > psf.wavemin) & (spot_wave < psf.wavemax)
    pos = (psf.y(fiber, spot_wave[inside]) + 0.5) / step - 0.5
    return centres, _deposit_linear(pos, spot_flux[inside], nbin)


def _deposit_linear(pos, values, nbin):
    """Split each value between bins ``floor(pos)`` and the next, in proportion to proximity.

    Parameters
    ----------
    pos : array, shape (n,)
        Positions in bin units (bin ``k`` is centred on ``k``).
    values : array, shape (n,)
    nbin : int
        Bins kept (0 .. nbin - 1); shares falling outside are dropped.

    Returns
    -------
    ndarray, shape (nbin,)
    """
    k = np.floor(pos).astype(np.int64)
    t = pos - k
    out = np.zeros(nbin)
    for kk, share in ((k, 1 - t), (k + 1, t)):
        ok = (kk >= 0) & (kk < nbin)
        np.add.at(out, kk[ok], share[ok] * values[ok])
    return out


def template_spots(template_wave, template_flux, grid_step=None, grid_origin=None):
    """Turn a sky template into spots (wavelength, flux) for the projection of :func:`measure_y_shifts_template`.

    Parameters
    ----------
    template_wave, template_flux : array, shape (ntemplate,)
        Angstrom and flux per Angstrom.
    grid_step, grid_origin : float, optional
        When given, the template is represented as the extraction represents any
        spectrum: flux at the points ``grid_origin + k * grid_step`` (Angstrom),
        each template sample's flux split linearly between its two neighbours.
        An unresolved line then falls on the CCD exactly as an extracted spectrum
        on that grid would put it (two spots, same centroid).  Otherwise every
        template sample is a spot.

    Returns
    -------
    wave, flux : ndarray
        Spot wavelengths (Angstrom) and fluxes (flux per Angstrom × Angstrom).
    """
    wave = np.asarray(template_wave, dtype=np.float64)
    sample = np.asarray(template_flux, dtype=np.float64) * np.gradient(wave)
    if grid_step is None:
        return wave, sample
    pos = (wave - grid_origin) / grid_step
    k0 = int(np.floor(pos.min()))
    flux = _deposit_linear(pos - k0, sample, int(np.floor(pos.max())) - k0 + 2)
    return grid_origin + grid_step * (k0 + np.arange(flux.size)), flux


def _split_template(wave, flux, width=10.0):
    """Split a sky template into a line part and a smooth continuum (running median over ``width`` Å)."""
    from scipy.ndimage import median_filter, uniform_filter1d

    nsample = max(int(round(width / np.median(np.diff(wave)))), 3)
    cont = uniform_filter1d(median_filter(flux, size=nsample, mode="nearest"), nsample, mode="nearest")
    return flux - cont, cont


def _sample_shifted(fine, grid0, rows, shift, step):
    """Linear interpolation of fine-grid models [n, nfine] (row of sample 0: ``grid0``) at ``rows - shift``."""
    pos = (rows - shift[:, None] - grid0[:, None]) / step
    i = np.clip(np.floor(pos).astype(np.int64), 0, fine.shape[1] - 2)
    t = pos - i
    return np.take_along_axis(fine, i, axis=1) * (1 - t) + np.take_along_axis(fine, i + 1, axis=1) * t


def measure_y_shifts_template(image, psf, template_wave, template_flux, window=256, max_shift=2.0,
                              step=0.1, half_kernel=7.0, max_err=0.1, fibers=None, grid=None):
    """Measure wavelength-direction shifts by fitting a night-sky template to every fiber.

    The template is split into its lines and a smooth continuum.  Each fiber's
    boxcar spectrum is cut into windows of ``window`` rows; in each, both parts are
    projected onto the rows through the PSF (template flux in sub-row bins of
    ``step`` rows convolved with the pixel-integrated along-dispersion profile at
    the window's centre) and the data are fitted with the line part moved by a
    shift ``dy`` and free amplitudes for the lines, the continuum and a linear
    background.  ``dy`` starts from the best of a coarse scan over ±``max_shift``
    rows and is refined by Gauss-Newton.  Blended lines are modelled as they are,
    so no line list is needed.

    Parameters
    ----------
    image : desired.image.Image
    psf : GaussHermitePSF
    template_wave, template_flux : array, shape (ntemplate,)
        Night-sky spectrum: increasing vacuum wavelengths (Angstrom) and flux
        (any linear unit per Angstrom).
    window : int
        Rows per fitted window.
    max_shift : float
        Half range of the coarse scan, rows.
    step : float
        Sub-row bin width of the projected template, rows.
    half_kernel : float
        Half support of the along-dispersion profile, rows.
    max_err : float
        Windows whose shift uncertainty (scaled by sqrt(chi2/dof) when above 1)
        exceeds this, in rows, are dropped.
    fibers : array of int, optional
        Fibers to measure (e.g. the sky fibers); all by default.
    grid : (origin, step), optional
        Represent the template on this wavelength grid (Angstrom), as the
        extraction does (see :func:`template_spots`); the template's own samples otherwise.

    Returns
    -------
    fiber, wave, dy, dy_err : ndarray, shape (nmeas,)
        Fiber index, window-centre wavelength (Angstrom), shift and its uncertainty (rows).
    """
    template_wave = np.asarray(template_wave, dtype=np.float64)
    origin, gstep = grid if grid is not None else (None, None)
    parts = [template_spots(template_wave, part, gstep, origin)
             for part in _split_template(template_wave, np.asarray(template_flux, dtype=np.float64))]
    windows = _template_windows(image, psf, parts, fibers, window, max_shift, step, half_kernel)
    if windows is None:
        return (np.zeros(0, dtype=np.int64),) + (np.zeros(0),) * 3
    dy, err, amp = _fit_template_windows(windows, window, max_shift, step)
    good = np.isfinite(err) & (err > 0) & (err < max_err) & (amp > 0) & (np.abs(dy) < max_shift)
    log.info("template y shifts: %d of %d windows kept (median error %.3f px)", good.sum(), windows.fiber.size,
             float(np.median(err[good])) if good.any() else np.nan)
    return windows.fiber[good], windows.wave[good], dy[good], err[good]


@dataclasses.dataclass(frozen=True)
class _TemplateWindows:
    """Row windows of the boxcar spectra and their projected template parts.

    ``fiber``, ``wave`` (window-centre wavelength, Angstrom) and ``grid0`` (row of
    fine sample 0) have shape (n,); ``data`` (boxcar electrons), ``weight``
    (1/electron^2) and ``rows`` (CCD rows, edge-padded) have shape (n, window);
    ``fine_lines`` and ``fine_cont`` (the template's line and continuum parts on
    sub-row bins, convolved with the PSF) have shape (n, nfine).
    """

    fiber: np.ndarray
    wave: np.ndarray
    data: np.ndarray
    weight: np.ndarray
    rows: np.ndarray
    fine_lines: np.ndarray
    fine_cont: np.ndarray
    grid0: np.ndarray


def _template_windows(image, psf, parts, fibers, window, max_shift, step, half_kernel):
    """Cut every fiber's boxcar spectrum into windows and project the template onto each.

    Parameters
    ----------
    image : desired.image.Image
    psf : GaussHermitePSF
    parts : list of (wave, flux)
        Spots of the template's line and continuum parts (:func:`template_spots`).
    fibers : array of int or None
        Fibers to use; all by default.
    window, max_shift, step, half_kernel
        As in :func:`measure_y_shifts_template`.

    Returns
    -------
    _TemplateWindows or None
        None when no window has usable data and template flux.
    """
    ny = image.shape[0]
    variance = _variance(image)
    all_rows = np.arange(ny)
    margin = int(np.ceil(max_shift + 1))
    starts = np.arange(margin, ny - margin - window // 2, window)
    kern_off = np.arange(-int(round(half_kernel / step)), int(round(half_kernel / step)) + 1) * step
    nfine = int(np.ceil((window + 2 * margin) / step)) + 1
    fib, wav, data, weight, rowsel, lines, cont, grid0 = [], [], [], [], [], [], [], []
    for f in (range(psf.nfiber) if fibers is None else fibers):
        spec, var = _boxcar(image, psf, f, all_rows, variance=variance)
        projected = [_template_rows(psf, f, pw, pf, ny, step) for pw, pf in parts]
        for r0 in starts:
            rr = np.arange(r0, r0 + window)
            rr = rr[rr < ny - margin]
            good = var[rr] > 0
            if good.sum() < window // 2:
                continue
            wc = float(psf.wavelength(f, np.array([rr.mean()]))[0])
            if not (psf.wavemin < wc < psf.wavemax):
                continue
            i0 = int(np.floor((rr[0] - margin) / step))
            fine = _window_template(psf, f, wc, projected, i0, nfine, kern_off)
            if not np.any(fine[0] != 0):
                continue
            fib.append(f)
            wav.append(wc)
            data.append(np.pad(spec[rr], (0, window - rr.size)))
            weight.append(np.pad(np.where(good, 1.0 / np.where(good, var[rr], 1.0), 0.0), (0, window - rr.size)))
            rowsel.append(np.pad(rr, (0, window - rr.size), mode="edge").astype(np.float64))
            lines.append(fine[0])
            cont.append(fine[1])
            grid0.append((i0 + 0.5) * step - 0.5)                  # row of fine sample 0
    if not fib:
        return None
    return _TemplateWindows(np.array(fib), np.array(wav), np.array(data), np.array(weight), np.array(rowsel),
                            np.array(lines), np.array(cont), np.array(grid0))


def _window_template(psf, fiber, wave, projected, i0, nfine, kern_off):
    """Return the projected template parts of one window, convolved with the PSF's row profile.

    Parameters
    ----------
    psf : GaussHermitePSF
    fiber : int
    wave : float
        Window-centre wavelength, Angstrom (where the profile is evaluated).
    projected : list of (centres, flux)
        Template parts on sub-row bins of the fiber (:func:`_template_rows`).
    i0 : int
        Sub-row bin of the window's first fine sample.
    nfine : int
        Fine samples per window.
    kern_off : ndarray, shape (nkern,)
        Row offsets of the along-dispersion profile (odd length, centred on 0).

    Returns
    -------
    list of ndarray, shape (nfine,)
        One per template part (zero outside the binned template).
    """
    centres = projected[0][0]
    pad = len(kern_off) // 2
    idx = np.arange(i0 - pad, i0 + nfine + pad)
    inside = (idx >= 0) & (idx < centres.size)
    kern = _profile(psf, np.full(kern_off.size, fiber), np.full(kern_off.size, wave), -kern_off,
                    np.zeros((kern_off.size, 1)), "y")[:, 0]
    return [np.convolve(np.where(inside, flux[np.clip(idx, 0, centres.size - 1)], 0.0), kern, mode="valid")
            for _, flux in projected]


def _fit_template_windows(windows, window, max_shift, step):
    """Fit the shift of the template's line part in every window.

    A coarse scan over ±``max_shift`` rows (steps of 0.25, positive line amplitude
    only) gives the start of a Gauss-Newton fit with the continuum, a constant and
    a slope as further linear terms.

    Parameters
    ----------
    windows : _TemplateWindows
    window, max_shift, step
        As in :func:`measure_y_shifts_template`.

    Returns
    -------
    dy, dy_err, amp : ndarray, shape (n,)
        Shift (rows), its uncertainty scaled by ``sqrt(chi2/dof)`` when above 1, and
        the line amplitude.
    """
    data, weight, rows, grid0 = windows.data, windows.weight, windows.rows, windows.grid0
    fine_lines, fine_cont = windows.fine_lines, windows.fine_cont
    n = windows.fiber.size
    slope = np.broadcast_to(np.linspace(-1.0, 1.0, window), data.shape)

    def design(shift):
        return np.stack([_sample_shifted(fine_lines, grid0, rows, shift, step),
                         _sample_shifted(fine_cont, grid0, rows, shift, step),
                         np.ones_like(data), slope], axis=1)

    # coarse scan: chi2 of the linear fit at each trial shift (positive line amplitude only)
    trials = np.arange(-max_shift, max_shift + 1e-9, 0.25)
    chi2 = np.empty((trials.size, n))
    for j, trial in enumerate(trials):
        coef, resid = _linear_fit(data, weight, design(np.full(n, trial)))
        chi2[j] = np.where(coef[:, 0] > 0, (weight * resid ** 2).sum(axis=1), np.inf)
    start = trials[np.argmin(chi2, axis=0)]
    fixed = design(start)[:, 1:]
    dy, err, amp = _gauss_newton_shift(data, weight, lambda sh: _sample_shifted(fine_lines, grid0, rows, sh, step),
                                       0, niter=6, shift0=start, basis=fixed)
    _, resid = _linear_fit(data, weight, design(dy))
    chi2_best = (weight * resid ** 2).sum(axis=1)
    dof = np.maximum((weight > 0).sum(axis=1) - 5, 1)
    return dy, err * np.sqrt(np.maximum(chi2_best / dof, 1.0)), amp


def measure_y_shifts_edges(image, psf, edge_wave, half_window=12, min_snr=10.0):
    """Measure wavelength-direction shifts from the edges of a continuum at known wavelengths.

    Parameters
    ----------
    image : desired.image.Image
    psf : GaussHermitePSF
    edge_wave : (float or None, float or None)
        Wavelengths (Angstrom) where the continuum starts (rises) and ends (falls).
    half_window : int
    min_snr : float

    Returns
    -------
    fiber, wave, dy, dy_err : ndarray, shape (nmeas,)
    """
    ny = image.shape[0]
    fib, wav, data, weight, rowsel, yc, sign = [], [], [], [], [], [], []
    all_rows = np.arange(ny)
    variance = _variance(image)
    for f in range(psf.nfiber):
        spec, var = _boxcar(image, psf, f, all_rows, variance=variance)
        for lw, rising in zip(edge_wave, (True, False)):
            if lw is None:
                continue
            y0 = float(np.ravel(psf.y(f, lw))[0])
            r0 = int(np.rint(y0)) - half_window
            if r0 < 0 or r0 + 2 * half_window >= ny:
                continue
            rr = np.arange(r0, r0 + 2 * half_window + 1)
            fib.append(f)
            wav.append(lw)
            yc.append(y0)
            sign.append(rising)
            data.append(spec[rr])
            weight.append(np.where(var[rr] > 0, 1.0 / np.where(var[rr] > 0, var[rr], 1.0), 0.0))
            rowsel.append(rr)
    if not fib:
        return (np.zeros(0, dtype=np.int64),) + (np.zeros(0),) * 3
    fib, wav, yc, sign = np.array(fib), np.array(wav), np.array(yc), np.array(sign)
    data, weight, rowsel = np.array(data), np.array(weight), np.array(rowsel)
    ext = 8.0         # the profile's support beyond the window, rows
    delta = 0.1       # sub-grid of spot centres that stands for the continuum, rows
    nsub = int(np.ceil((2 * half_window + 1 + 2 * ext) / delta))

    def step_model(s):
        # a continuum starting (ending) at yc: the sum of spots centred on a fine grid above (below) it
        k = (np.arange(nsub) + 0.5) * delta
        offs = np.where(sign[:, None], k[None, :], -k[None, :])                  # [n, nsub]
        centres = (yc + s)[:, None] + offs
        n, nr = rowsel.shape
        prof = _profile(psf, np.repeat(fib, nsub), np.repeat(wav, nsub), centres.ravel(),
                        np.repeat(rowsel, nsub, axis=0), "y")
        return prof.reshape(n, nsub, nr).sum(axis=1) * delta

    dy, err, amp = _gauss_newton_shift(data, weight, step_model, 0)
    good = np.isfinite(err) & (err > 0) & (amp > 0) & (np.abs(dy) < half_window - 4)
    return fib[good], wav[good], dy[good], err[good]


def _clipped_lstsq(design, shift, sig, nsig):
    """Weighted least squares with iterative clipping at ``nsig`` robust sigmas: (coef, keep)."""
    keep = np.ones(shift.size, dtype=bool)
    for _ in range(5):
        c, *_ = np.linalg.lstsq(design[keep] / sig[keep, None], shift[keep] / sig[keep], rcond=None)
        res = (shift - design @ c) / sig
        scale = max(1.4826 * np.median(np.abs(res[keep])), 1.0)
        newkeep = np.abs(res) < nsig * scale
        if np.array_equal(newkeep, keep) or newkeep.sum() < design.shape[1] + 1:
            break
        keep = newkeep
    return c, keep


def fit_shift_model(psf, fiber, wave, shift, err, fiber_degree=1, wave_degree=2, nsig=4.0, choose_degrees=True):
    """Fit a smooth shift model to per-(fiber, wavelength) measurements with clipping.

    Parameters
    ----------
    psf : GaussHermitePSF
        Gives the fiber count and wavelength domain of the model.
    fiber, wave, shift, err : array, shape (nmeas,)
        Fiber index, wavelength (Angstrom), measured shift and its error (pixels).
    fiber_degree, wave_degree : int
        Highest Legendre degrees across fibers and along wavelength.  Degrees are
        lowered when the measurements do not constrain them (few fibers or wavelengths).
    nsig : float
        Clipping threshold, robust sigmas.
    choose_degrees : bool
        Keep a higher degree only where it pays for itself: among all degree pairs up
        to the highest, take the one with the lowest Bayesian information criterion
        (chi2 + number of coefficients × ln(nmeas), chi2 rescaled by the full model's
        reduced chi2 when that exceeds 1) on the measurements the full model kept.
        Two well-measured wavelengths and one poor one thus give a constant, not a
        slope pinned by noise.

    Returns
    -------
    ShiftModel
    """
    fiber = np.asarray(fiber)
    if fiber.size == 0:
        return ShiftModel(np.zeros((1, 1)), psf.nfiber, psf.wavemin, psf.wavemax)
    shift = np.asarray(shift, dtype=np.float64)
    fiber_degree = min(fiber_degree, max(np.unique(fiber).size - 1, 0))
    wave_degree = min(wave_degree, max(np.unique(np.round(wave, 1)).size - 1, 0))
    f = _reduced_fiber(fiber, psf.nfiber)
    u = reduced_wavelength(wave, psf.wavemin, psf.wavemax)
    sig = np.sqrt(np.asarray(err) ** 2 + 0.002 ** 2)
    full = legendre.legvander2d(f, u, [fiber_degree, wave_degree])
    c, keep = _clipped_lstsq(full, shift, sig, nsig)
    degrees = (fiber_degree, wave_degree)
    if choose_degrees and keep.sum() > full.shape[1] + 1:
        rchi2 = max(float((((shift - full @ c) / sig)[keep] ** 2).sum()) / (keep.sum() - full.shape[1]), 1.0)
        best = None
        for fd in range(fiber_degree + 1):
            for wd in range(wave_degree + 1):
                cols = [i * (wave_degree + 1) + j for i in range(fd + 1) for j in range(wd + 1)]
                d = full[keep][:, cols]
                cc, *_ = np.linalg.lstsq(d / sig[keep, None], shift[keep] / sig[keep], rcond=None)
                chi2 = float((((shift[keep] - d @ cc) / sig[keep]) ** 2).sum()) / rchi2
                bic = chi2 + len(cols) * np.log(keep.sum())
                if best is None or bic < best[0] - 1e-9:
                    best = (bic, (fd, wd))
        degrees = best[1]
        if degrees != (fiber_degree, wave_degree):
            c, keep = _clipped_lstsq(legendre.legvander2d(f, u, list(degrees)), shift, sig, nsig)
    design = legendre.legvander2d(f, u, list(degrees))
    resid = shift[keep] - design[keep] @ c
    rms = float(np.sqrt(np.average(resid ** 2, weights=1 / sig[keep] ** 2)))
    return ShiftModel(c.reshape(degrees[0] + 1, degrees[1] + 1), psf.nfiber, psf.wavemin, psf.wavemax,
                      rms, int(keep.sum()))


def apply_shifts(psf, xmodel, ymodel):
    """Return a copy of ``psf`` with the traces moved by the shift models.

    The shift of each fiber is a Legendre series in the trace's reduced wavelength,
    so it is added exactly to the XTRACE/YTRACE coefficients.
    """
    out = psf.copy()
    for model, coef_name in ((xmodel, "xcoef"), (ymodel, "ycoef")):
        if model is None:
            continue
        f = _reduced_fiber(np.arange(psf.nfiber), psf.nfiber)
        # coefficient k of the wavelength series of fiber f: Σ_i c[i, k] P_i(f)
        per_fiber = legendre.legvander(f, model.coef.shape[0] - 1) @ model.coef     # [nfiber, nwdeg+1]
        coef = getattr(out, coef_name)
        if coef.shape[1] < per_fiber.shape[1]:
            coef = np.hstack([coef, np.zeros((coef.shape[0], per_fiber.shape[1] - coef.shape[1]))])
        coef[:, :per_fiber.shape[1]] += per_fiber
        setattr(out, coef_name, coef)
    return out


def compute_trace_shifts(image, psf, lines_from="sky", line_wave=None, edge_wave=None, sky_template=None,
                         template_grid=None):
    """Measure the trace shifts of an exposure and return the shifted PSF.

    Parameters
    ----------
    image : desired.image.Image
        Flat or science preproc image.
    psf : GaussHermitePSF
        The reference (arc or nightly) PSF.
    lines_from : {'sky', 'continuum'}
        Source of the y shifts: emission lines (``line_wave``, default
        :data:`SKY_LINES`) or continuum edges (``edge_wave``).
    line_wave : array, optional
    edge_wave : (float or None, float or None), optional
        Start and end wavelengths of the continuum; without them only x shifts are
        measured in continuum mode.
    sky_template : (wave, flux) arrays, optional
        Night-sky spectrum (vacuum Angstrom, flux per Angstrom).  In sky mode the y
        shifts are then measured by fitting it to every fiber
        (:func:`measure_y_shifts_template`) instead of fitting isolated lines.
    template_grid : (origin, step), optional
        Wavelength grid (Angstrom) the template is represented on, normally the
        extraction's output grid (see :func:`template_spots`).

    Returns
    -------
    shifted : GaussHermitePSF
        Copy of ``psf`` with shifted traces; meta gets TRSHIFTX/TRSHIFTY (mean shifts),
        TRRMSX/TRRMSY and TRLINES.
    xmodel, ymodel : ShiftModel
    """
    avoid = (SKY_LINES if line_wave is None else line_wave) if lines_from == "sky" else None
    fib, wav, dx, dxe = measure_x_shifts(image, psf, avoid_wave=avoid)
    xmodel = fit_shift_model(psf, fib, wav, dx, dxe)
    log.info("x shifts: %d measurements, rms about the model %.4f px", xmodel.nmeas, xmodel.rms)
    if lines_from == "sky" and sky_template is not None:
        fy, wy, dy, dye = measure_y_shifts_template(image, apply_shifts(psf, xmodel, None), *sky_template,
                                                     grid=template_grid)
    elif lines_from == "sky":
        lw = SKY_LINES if line_wave is None else line_wave
        fy, wy, dy, dye = measure_y_shifts_lines(image, apply_shifts(psf, xmodel, None), lw)
    elif lines_from == "continuum":
        if edge_wave is None:
            log.warning("continuum mode without edge wavelengths: only x shifts are measured")
            fy = np.zeros(0, dtype=np.int64)
            wy = dy = dye = np.zeros(0)
        else:
            fy, wy, dy, dye = measure_y_shifts_edges(image, apply_shifts(psf, xmodel, None), edge_wave)
    else:
        raise ValueError(f"lines_from must be 'sky' or 'continuum', not {lines_from!r}")
    # two continuum edges constrain a wavelength slope poorly: keep the y shift constant in wavelength
    ymodel = fit_shift_model(psf, fy, wy, dy, dye, wave_degree=1 if lines_from == "sky" else 0)
    if fy.size == 0:
        log.warning("no y-shift measurement; y shift set to 0")
    log.info("y shifts: %d measurements, rms about the model %.4f px", ymodel.nmeas, ymodel.rms)
    shifted = apply_shifts(psf, xmodel, ymodel)
    grid = np.linspace(psf.wavemin, psf.wavemax, 50)
    allf = np.arange(psf.nfiber)[:, None]
    shifted.meta.update({"TRSHIFTX": float(np.mean(xmodel(allf, grid))),
                         "TRSHIFTY": float(np.mean(ymodel(allf, grid))),
                         "TRRMSX": xmodel.rms, "TRRMSY": ymodel.rms,
                         "TRLINES": "template" if (lines_from == "sky" and sky_template is not None)
                         else lines_from})
    return shifted, xmodel, ymodel
