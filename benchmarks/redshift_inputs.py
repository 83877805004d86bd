"""Coadds for developing and measuring the redshift fitter, made with desispec's own tools.

A frame-level simulated night (``desired simulate --level frame``) is calibrated
perfectly with the simulator's truth (:func:`desired.sim.truthcal.truth_calibrate`),
written as cframes (:func:`desired.io.frame.write_frame`), grouped with
``desispec.pixgroup.frames2spectra`` and coadded with ``desispec.coaddition.coadd``,
then written with ``desispec.io.write_spectra``: the same kind of coadd file that
``rrdesi`` reads in DESI's pipeline.  Not pipeline code (benchmarks and tests only).

Usage::

    python benchmarks/redshift_inputs.py OUTDIR [--preset petal] [--nscience 2] [--seed 3]
"""
from __future__ import annotations

import argparse
import glob
import os

import numpy as np

NIGHT = 20261124


def make_coadd(workdir, preset="mini", nscience=2, seed=3, night=NIGHT, nproc=1):
    """Simulate a frame-level night and coadd its science exposures with desispec.

    Parameters
    ----------
    workdir : str
        Directory for the simulated trees and the coadd.
    preset : str
        Simulator preset (``tiny``, ``mini``, ``petal``, ``full``).
    nscience : int
        Science exposures (same tile) to coadd.
    seed : int
    night : int
    nproc : int

    Returns
    -------
    coadd_path : str
        ``{workdir}/coadd.fits`` (all targets of the tile in one file).
    truth : astropy.table.Table
        Per-target truth (TARGETID, OBJTYPE, TRUEZ, TRUESPECTYPE, TEMPLATETYPE, ...).
    """
    from astropy.io import fits
    from astropy.table import Table
    from desispec.coaddition import coadd
    from desispec.io import write_spectra
    from desispec.pixgroup import FrameLite, frames2spectra

    from desired import paths
    from desired.io.frame import read_frame, write_frame
    from desired.io.truth import read_camera_truth
    from desired.scripts import simulate
    from desired.sim.truthcal import truth_calibrate

    prod, truth_dir = os.path.join(workdir, "prod"), os.path.join(workdir, "truth")
    coadd_path = os.path.join(workdir, "coadd.fits")
    simulate.run(night, calib_dir=os.path.join(workdir, "calib"), truth_dir=truth_dir, preset=preset, seed=seed,
                 narc=0, nflat=0, nscience=nscience, level="frame", frame_dir=prod, nproc=nproc)
    frames, truth = [], None
    for path in sorted(glob.glob(os.path.join(prod, "exposures", str(night), "*", "frame-*.fits"))):
        frame = read_frame(path)
        if str(frame.header.get("OBSTYPE", "SCIENCE")).strip().upper() != "SCIENCE":
            continue
        camera, expid = frame.header["CAMERA"], int(frame.header["EXPID"])
        cam_truth = read_camera_truth(paths.findfile("truth_camera", root=truth_dir, night=night, expid=expid,
                                                     camera=camera))
        cframe_path = paths.findfile("cframe", root=prod, night=night, expid=expid, camera=camera)
        write_frame(cframe_path, truth_calibrate(frame, cam_truth))
        lite = FrameLite.read(cframe_path)
        if lite.scores is None:  # our cframes carry no SCORES; desispec's grouping expects one
            lite.scores = Table({"TARGETID": np.asarray(lite.fibermap["TARGETID"]),
                                 f"MEDIAN_CALIB_FLUX_{camera[0].upper()}": np.median(lite.flux, axis=1)})
        frames.append(lite)
        if truth is None:
            truth_path = paths.findfile("truth", root=truth_dir, night=night, expid=expid)
            with fits.open(truth_path) as hdus:
                truth = Table(hdus["TRUTH"].data)
    spectra = frames2spectra(frames, onetile=True)
    spectra = spectra.to_spectra() if hasattr(spectra, "to_spectra") else spectra
    coadd(spectra, onetile=True)
    write_spectra(coadd_path, spectra)
    return coadd_path, truth


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--nscience", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    path, truth = make_coadd(args.outdir, args.preset, args.nscience, args.seed)
    truth.write(os.path.join(args.outdir, "truth.fits"), overwrite=True)
    print(path, len(truth), "targets;", dict(zip(*np.unique(np.asarray(truth["TEMPLATETYPE"]).astype(str),
                                                                 return_counts=True))))


if __name__ == "__main__":
    main()
