"""Inputs shared by test_stdstars.py and test_fluxcalib.py: a mini frame-level night whose frames are
flat-fielded and sky-subtracted with the simulator's truth (so that the flux calibration is measured
by itself), and a small stellar-model grid that keeps the tests fast."""
import numpy as np

from desired import paths
from desired.frame import Frame
from desired.io.frame import read_frame, write_frame
from desired.io.truth import read_camera_truth
from desired.scripts import simulate

NIGHT = 20261124
EXPID = 1
#: small model grid for tests (the pipeline default is 132 models)
GRID = {"teff": np.arange(5750.0, 7001.0, 250.0), "logg": (4.0,), "feh": (-1.0, 0.0)}


def truth_corrected(frame, truth):
    """Frame divided by the true relative fiber throughput and minus the true sky (R-convolved)."""
    thru = truth["FIBERFLAT"]
    ff = thru / thru.mean(axis=0)
    sky = frame.convolve(truth["SKY_ELECTRONS"])
    return Frame(frame.wave, (frame.flux - sky) / ff, frame.ivar * ff ** 2, frame.mask, frame.resolution_data,
                 frame.fibermap, None, frame.header, frame.fibers)


def make_night(root, seed=3):
    """Simulate; write corrected frames under root/corr; return dict with raw/corrected frames and truths."""
    simulate.run(NIGHT, calib_dir=str(root / "calib"), truth_dir=str(root / "truth"), preset="mini", seed=seed,
                 narc=0, nflat=0, nscience=1, level="frame", frame_dir=str(root / "prod"))
    out = {"root": root, "raw": {}, "corr": {}, "truth": {}, "corr_path": {}, "nominal": {}}
    for band in "brz":
        cam = f"{band}0"
        raw = read_frame(paths.findfile("frame", root=root / "prod", night=NIGHT, expid=EXPID, camera=cam))
        truth = read_camera_truth(paths.findfile("truth_camera", root=root / "truth", night=NIGHT, expid=EXPID,
                                                 camera=cam))
        corr = truth_corrected(raw, truth)
        path = root / "corr" / f"frame-{cam}-{EXPID:08d}.fits"
        path.parent.mkdir(exist_ok=True)
        write_frame(str(path), corr)
        out["raw"][band], out["truth"][band], out["corr"][band] = raw, truth, corr
        out["corr_path"][band] = str(path)
        out["nominal"][band] = paths.findfile("calib_fluxcalib", root=root / "calib", camera=cam)
    return out
