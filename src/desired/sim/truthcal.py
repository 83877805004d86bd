"""Perfect ("truth") calibration of simulated frames, for measuring downstream steps.

The calibration chain (fiberflat, sky, flux calibration) is measured against the
truth, and the steps after it (coadds, redshifts) are developed on spectra
calibrated *perfectly* with the simulator's truth so that their errors are their
own.  In DESI's point-source convention a cframe holds::

    cframe = (frame - R·sky_e) / (R·(T·C))

with ``sky_e`` the true sky electrons of the fiber (fiber throughput included),
``T`` the true fiber throughput and ``C`` the true point-source calibration
(e-/Å per 1e-17 erg/s/cm²/Å).  Its expectation is :func:`true_cframe_flux`,
``R·(object electrons / (T·C))`` divided the same way.  Never used by the pipeline.
"""
from __future__ import annotations

import numpy as np

from ..frame import Frame


def true_calibration(frame, truth):
    """Resolution-convolved true calibration ``R·(T·C)`` of every fiber, shape (nspec, nwave).

    Parameters
    ----------
    frame : desired.frame.Frame
        A simulated science frame (electron/Angstrom) with resolution data.
    truth : dict
        :func:`desired.io.truth.read_camera_truth` of the same camera and exposure.
    """
    return frame.convolve(truth["FIBERFLAT"] * truth["FLUXCALIB"][None, :])


def true_cframe_flux(frame, truth):
    """Expected cframe flux ``R·obj_e / R·(T·C)`` (1e-17 erg/s/cm²/Å), shape (nspec, nwave)."""
    cal = true_calibration(frame, truth)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cal > 0, frame.convolve(truth["OBJ_ELECTRONS"]) / cal, 0.0)


def truth_calibrate(frame, truth):
    """Return a cframe calibrated perfectly with the truth (a new Frame; inputs unchanged).

    Parameters
    ----------
    frame : desired.frame.Frame
        Simulated science frame in electron/Angstrom, with resolution data.
    truth : dict
        :func:`desired.io.truth.read_camera_truth` of the same camera and exposure.

    Returns
    -------
    desired.frame.Frame
        Flux and ivar in 1e-17 erg/s/cm²/Å units (ivar scaled by the calibration²);
        pixels without calibration get ivar 0.
    """
    cal = true_calibration(frame, truth)
    sky = frame.convolve(truth["SKY_ELECTRONS"])
    good = cal > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = np.where(good, (frame.flux - sky) / cal, 0.0)
        ivar = np.where(good, frame.ivar * cal ** 2, 0.0)
    header = dict(frame.header)
    header["BUNIT"] = "10**-17 erg/(s cm2 Angstrom)"
    header["TRUTHCAL"] = (True)
    return Frame(frame.wave.copy(), flux, ivar, frame.mask.copy(),
                 None if frame.resolution_data is None else frame.resolution_data.copy(),
                 frame.fibermap, None, header, frame.fibers.copy(), frame.scores)
