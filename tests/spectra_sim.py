"""Simulated cframes for the spectra/coadd tests: frame-level mini exposures calibrated with the truth."""
from __future__ import annotations

import glob
import os

import numpy as np

from desired.io.frame import CFRAME_UNITS, read_frame, write_frame
from desired.io.truth import read_camera_truth
from desired.paths import findfile
from desired.sim.truthcal import truth_calibrate


def simulate_cframes(root, night=20261124, nscience=3, seed=1, preset="mini", tileid=1000, expid_start=1):
    """Simulate ``nscience`` frame-level exposures under ``root`` and write truth-calibrated cframes.

    Returns
    -------
    list of str
        The cframe paths (``root/prod/exposures/...``); truth under ``root/truth``.
    """
    from desired.sim.night import NightConfig, simulate_night
    cfg = NightConfig(preset=preset, night=night, seed=seed, narc=0, nflat=0, nscience=nscience, tileid=tileid,
                      expid_start=expid_start, data_dir=None)
    prod, truth = os.path.join(root, "prod"), os.path.join(root, "truth")
    seq = simulate_night(cfg, truth_dir=truth, level="frame", frame_dir=prod)
    out = []
    for exp in seq:
        for path in sorted(glob.glob(os.path.join(prod, "exposures", str(night), f"{exp['expid']:08d}", "frame-*.fits"))):
            frame = read_frame(path)
            tr = read_camera_truth(findfile("truth_camera", root=truth, night=night, expid=exp["expid"],
                                            camera=frame.camera))
            cpath = findfile("cframe", root=prod, night=night, expid=exp["expid"], camera=frame.camera)
            write_frame(cpath, truth_calibrate(frame, tr), units=CFRAME_UNITS)
            os.remove(path)
            out.append(cpath)
    return out


def true_flux(root, night, expid, camera):
    """Intrinsic object flux in cframe units, OBJ_ELECTRONS / (FIBERFLAT * FLUXCALIB), shape (nfiber, nwave)."""
    tr = read_camera_truth(findfile("truth_camera", root=os.path.join(root, "truth"), night=night, expid=expid,
                                    camera=camera))
    cal = tr["FIBERFLAT"] * tr["FLUXCALIB"][None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cal > 0, tr["OBJ_ELECTRONS"] / cal, 0.0)
