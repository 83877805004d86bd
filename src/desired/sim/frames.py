"""Frame-level mode: the same exposures written directly as extracted frames.

For each camera the true spectrum ``ELECTRONS`` (e-/Å on the output grid,
:func:`desired.sim.night.camera_spectra`) is convolved with a Gaussian resolution
matrix (11 diagonals) whose width is the true PSF's GHSIGY converted to output
pixels (``GHSIGY · dλ/dy / 0.8``, evaluated for each fiber and wavelength).  The
noise of output bin ``j`` (width 0.8 Å) is Gaussian with variance, in (e-/Å)²::

    var = [ 0.8 M_j + dark · n_pix + RN² · n_pix ] / 0.8²,
    n_pix = (0.8 / (dλ/dy)) rows · 2 √π σ_x columns      (optimal-extraction footprint)

where ``M = R · ELECTRONS`` is the noiseless model.  IVAR is ``1/var`` of the
noiseless model, so ``(FLUX - M)·sqrt(IVAR)`` is exactly unit normal.  Truth:
``M`` is not stored; tests rebuild it from the frame's RESOLUTION and the truth
``ELECTRONS``.
"""
from __future__ import annotations

import numpy as np

from ..frame import Frame
from ..resolution import NDIAG, Resolution
from . import detector, instrument as ins
from . import night as _night


def _dwave_dy(psf, fiber, wave):
    """dλ/dy (Å per CCD row) of each fiber at ``wave``, shape (nfiber, nwave)."""
    eps = 0.5
    f = np.asarray(fiber)[:, None]
    return 2 * eps / (psf.y(f, wave[None, :] + eps) - psf.y(f, wave[None, :] - eps))


def simulate_camera_frame(cfg, exp, camera, fibermap=None):
    """Simulate one camera of one exposure as an extracted frame.

    Parameters
    ----------
    cfg : NightConfig
    exp : dict
    camera : str
    fibermap : astropy.table.Table, optional
        Fibermap of the exposure (all petals); the camera's rows are attached.

    Returns
    -------
    dict
        ``frame`` (:class:`desired.frame.Frame`), ``model`` (noiseless R·ELECTRONS),
        ``spectra``, ``shift``.
    """
    opt = _night._optics(camera, cfg.preset, cfg.seed)
    psf = opt.psf
    ccd = detector.draw_ccd_truth(camera, cfg.seed, opt.shape, cfg.bad_column)
    spectra = _night.camera_spectra(cfg, exp, camera)
    wave = spectra["wave"]
    nfib = spectra["fibers"].size
    fidx = np.arange(nfib)
    dldy = _dwave_dy(psf, fidx, wave)
    sigy = psf.param("GHSIGY", fidx[:, None], wave[None, :])
    sigx = psf.param("GHSIGX", fidx[:, None], wave[None, :])
    sigma_out = sigy * dldy / ins.WAVE_STEP
    rdata = np.empty((nfib, NDIAG, wave.size))
    model = np.empty((nfib, wave.size))
    for i in range(nfib):
        res = Resolution.from_sigma(sigma_out[i])
        rdata[i] = res.data
        model[i] = res.apply(spectra["electrons"][i])
    rn2 = np.mean([ccd["readnoise"][a] ** 2 for a in detector.AMPS])
    npix = (ins.WAVE_STEP / dldy) * 2.0 * np.sqrt(np.pi) * sigx
    dark = ccd["dark_current"] * exp["exptime"] / 3600.0
    var = (ins.WAVE_STEP * np.clip(model, 0.0, None) + (dark + rn2) * npix) / ins.WAVE_STEP ** 2
    ivar = 1.0 / var
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, exp["expid"], ins.camera_index(camera)]))
    flux = model + rng.normal(size=model.shape) * np.sqrt(var)
    header = _night.exposure_header(cfg, exp)
    header.update({"CAMERA": camera, "SPECGRPH": int(camera[1:]), "DETECTOR": f"SIM-{camera}",
                   "WAVEMIN": float(wave[0]), "WAVEMAX": float(wave[-1]), "WAVESTEP": ins.WAVE_STEP,
                   "SIMLEVEL": "frame"})
    fm = None
    if fibermap is not None:
        fm = fibermap[np.isin(fibermap["FIBER"], spectra["fibers"])]
    frame = Frame(wave, flux, ivar, mask=np.zeros(flux.shape, dtype=np.uint32), resolution_data=rdata,
                  fibermap=fm, header=header, fibers=spectra["fibers"])
    return {"frame": frame, "model": model, "spectra": spectra, "shift": (0.0, 0.0)}
