"""Simulate one night: exposure sequence, per-camera rendering, raw/truth/calibration files.

Extraction truth
----------------
For every camera of a lamp-flat or science exposure the simulator defines the
true spectrum ``ELECTRONS[fiber, wave]`` in electrons per Å on the extraction
output grid of its band (``np.arange(wmin, wmax + 0.4, 0.8)``; b 3600-5800,
r 5760-7620, z 7520-9824 Å; the ``tiny`` preset keeps only a window).  The
image is rendered as delta spots at the grid wavelengths carrying
``ELECTRONS * 0.8`` electrons each, projected with the camera's true PSF.  So an
extraction with the true PSF on that grid recovers ``ELECTRONS`` (convolved by
its own resolution matrix); this array is written to the truth tree.
Arc lines are rendered as delta spots at their exact vacuum wavelengths.

Seeds
-----
* optics, CCD constants: ``SeedSequence([seed, 0, camera_index, 1 | 2])``;
* targets: ``SeedSequence([seed, tileid, fiber, 3])`` (per fiber);
* sky variations: ``SeedSequence([seed, expid, 4])`` (shared by all cameras);
* fiber throughput: ``SeedSequence([seed, 0, fiber, 5])``;
* trace shifts: ``SeedSequence([seed, expid, camera_index, 6])``;
* noise and cosmics: ``SeedSequence([seed, expid, camera_index])``.

So any camera of any exposure regenerates bit-identical on its own, whatever
the number of worker processes.
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
from dataclasses import dataclass

import numpy as np
import yaml
from astropy.io import fits
from astropy.time import Time

from .. import paths
from ..fibermap import empty_fibermap
from ..maskbits import mws_target
from ..io.calib import write_ccd_calib, write_sky_template
from ..io.fibermap import table_to_hdu, write_fibermap
from ..io.psf import write_psf
from ..io.raw import write_raw
from ..io.util import atomic_path
from . import arclines, detector, instrument as ins, optics, population, targets
from . import photometry as simphot

log = logging.getLogger(__name__)

#: electrons per second per unit line intensity of the arc lamps
ARC_RATE = 5.0e4
#: tile centre of the simulated dark tile
TILE_RA, TILE_DEC = 150.10, 2.18
PLATE_SCALE_MM_PER_DEG = 252.0


# ------------------------------------------------------------------ calibration sequence (calib)
#: DESI's nightly flat sequence, which the default night follows: 3 LED flats of 120 s
#: from each of the 4 calibration units, PROGRAM "calib desi-calib-0N leds only",
#: SEQNUM 1-3 / SEQTOT 3 per unit (real exposure tables shipped with desispec,
#: test/data/exposure_tables/202309/exposure_table_20230913.csv, and the table in
#: shared/reference/simulator-research.md §1.5).  desispec builds the nightly fiberflat
#: from all of them (only 120 s "desi-calib-0*" flats: workflow/calibration_selection.py,
#: PR #1682; combined across lamps by autocalib_fiberflat).  With fewer flats the nightly
#: flat is photon-noise limited above 0.5 %: 3 flats of this lamp give 0.58-0.67 % rms.
FLAT_UNITS, FLATS_PER_UNIT = 4, 3
DESI_NFLAT = FLAT_UNITS * FLATS_PER_UNIT


def flat_program(index):
    """PROGRAM, SEQNUM and SEQTOT of the ``index``-th (0-based) flat of DESI's sequence."""
    unit = (index // FLATS_PER_UNIT) % FLAT_UNITS
    return f"calib desi-calib-0{unit} leds only", index % FLATS_PER_UNIT + 1, FLATS_PER_UNIT


@dataclass
class NightConfig:
    """Everything that defines a simulated night.

    Attributes
    ----------
    preset : str
        ``full``, ``petal``, ``mini`` or ``tiny``.
    night : int
        YYYYMMDD.
    seed : int
    narc, nlongarc, nflat, nscience, nzero, ndark : int
        Number of short all-lamp arcs (5 s), long Cd+Xe arcs (30 s), LED flats
        (120 s; default DESI's 12, see :data:`DESI_NFLAT`), science exposures, zeros
        and darks (300 s).
    cosmic_rate : float
        Cosmic rays per cm² per minute.
    bad_column : bool
    expid_start : int
    tileid : int
    science_exptime : float
    airmass : float
    truth_pixels : bool or None
        Write the noiseless electron image of every camera to the truth tree
        (default: only for the mini and tiny presets).
    sky_condition : {'dark', 'bright'}
        Sky of the science exposures (``bright`` adds moonlight; FAPRGRM becomes 'bright').
    data_dir : str or None
        Directory with optional sky/extinction tables (spec-sky-2018.dat,
        ZenExtinct-KPNO.fits); parametric models when None.
    """

    preset: str = "mini"
    night: int = 20261124
    seed: int = 0
    narc: int = 3
    nlongarc: int = 0
    nflat: int = DESI_NFLAT
    nscience: int = 2
    nzero: int = 0
    ndark: int = 0
    cosmic_rate: float = 1.0
    bad_column: bool = False
    expid_start: int = 1
    tileid: int = 1000
    science_exptime: float = 900.0
    airmass: float = 1.2
    data_dir: str = None
    truth_pixels: bool = None
    sky_condition: str = "dark"

    def __post_init__(self):
        if self.truth_pixels is None:
            self.truth_pixels = self.preset in ("mini", "tiny")

    @property
    def geometry(self):
        return ins.get_preset(self.preset)


def exposure_sequence(cfg):
    """List of exposure dicts (EXPID, OBSTYPE, FLAVOR, EXPTIME, PROGRAM, lamps, MJD-OBS ...)."""
    night = str(cfg.night)
    # local evening of NIGHT at Kitt Peak (UTC-7): calibrations from 00:00 UTC of the next day
    t0 = Time(f"{night[:4]}-{night[4:6]}-{night[6:]}T00:00:00", scale="utc").mjd + 1.0
    seq = []
    def add(obstype, exptime, program, **kw):
        seq.append(dict(obstype=obstype, exptime=float(exptime), program=program, **kw))
    for _ in range(cfg.nzero):
        add("ZERO", 0.0, "calib zeros for nightly bias")
    for _ in range(cfg.ndark):
        add("DARK", 300.0, "calib dark 5min")
    for _ in range(cfg.narc):
        add("ARC", 5.0, "calib short arcs all", lamps=arclines.ALL_LAMPS)
    for _ in range(cfg.nlongarc):
        add("ARC", 30.0, "calib long arcs cd+xe", lamps=arclines.CDXE_LAMPS)
    for i in range(cfg.nflat):
        program, seqnum, seqtot = flat_program(i)
        add("FLAT", 120.0, program, seqnum=seqnum, seqtot=seqtot)
    for _ in range(cfg.nscience):
        add("SCIENCE", cfg.science_exptime, cfg.sky_condition)
    mjd = t0
    for i, exp in enumerate(seq):
        exp["expid"] = cfg.expid_start + i
        if exp["obstype"] == "SCIENCE" and mjd < t0 + 4 / 24:
            mjd = t0 + 4 / 24
        exp["mjd"] = mjd
        mjd += (exp["exptime"] + 120.0) / 86400.0
    return seq


def exposure_header(cfg, exp):
    """Exposure-level keywords of one exposure."""
    science = exp["obstype"] == "SCIENCE"
    date = Time(exp["mjd"], format="mjd", scale="utc").isot
    hdr = {
        "EXPID": int(exp["expid"]), "NIGHT": int(cfg.night), "OBSTYPE": exp["obstype"],
        "FLAVOR": exp["obstype"].lower(), "EXPTIME": exp["exptime"], "REQTIME": exp["exptime"],
        "TILEID": int(cfg.tileid) if science else -1, "PROGRAM": exp["program"],
        "SURVEY": "main", "FAPRGRM": cfg.sky_condition if science else "calib",
        "DATE-OBS": date, "MJD-OBS": float(exp["mjd"]), "AIRMASS": float(cfg.airmass) if science else 1.0,
        "TARGTRA": TILE_RA if science else 0.0, "TARGTDEC": TILE_DEC if science else 0.0,
        "SKYRA": TILE_RA if science else 0.0, "SKYDEC": TILE_DEC if science else 0.0,
        "OBSID": f"sim-{cfg.night}-{exp['expid']}", "DOSVER": "SIM", "FEEVER": "SIM",
        "INSTRUME": "DESI", "PROCTYPE": "RAW", "SIMSEED": int(cfg.seed), "SIMPRSET": cfg.preset,
    }
    if "lamps" in exp:
        hdr["LAMPS"] = ",".join(exp["lamps"])
    if "seqnum" in exp:
        hdr.update(SEQNUM=int(exp["seqnum"]), SEQTOT=int(exp["seqtot"]))
    if science:
        hdr.update(TILERA=TILE_RA, TILEDEC=TILE_DEC, FIBASSGN=f"fiberassign-{cfg.tileid:06d}.fits.gz")
    return hdr


# ------------------------------------------------------------------ cached per process
@functools.lru_cache(maxsize=64)
def _optics(camera, preset, seed):
    return optics.build_camera_optics(camera, ins.get_preset(preset), seed)


@functools.lru_cache(maxsize=16)
def _targets(seed, tileid, fibers):
    return targets.make_targets(seed, tileid, np.array(fibers))


def target_ebv(tlist):
    """Galactic E(B-V) (SFD scale) of each target dict at its sky position."""
    dec0 = np.deg2rad(TILE_DEC)
    return np.array([simphot.galactic_ebv(TILE_RA + p["dra"] / np.cos(dec0), TILE_DEC + p["ddec"]) for p in tlist])


def fiber_throughput(seed, fibers, wave):
    """True relative throughput of absolute ``fibers`` (1-3 % rms, slight colour term), shape (nfiber, nwave)."""
    out = np.empty((len(fibers), np.size(wave)))
    for k, fiber in enumerate(fibers):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0, int(fiber), 5]))
        level = 1.0 + rng.normal(0.0, 0.02)
        slope = rng.normal(0.0, 0.01)
        out[k] = level * (1.0 + slope * (np.asarray(wave) - 6500.0) / 3000.0)
    return out


def trace_shift(cfg, exp, camera):
    """True (dx, dy) trace shift in pixels of ``camera`` in exposure ``exp`` (zero for arcs/zeros/darks)."""
    if exp["obstype"] not in ("FLAT", "SCIENCE"):
        return 0.0, 0.0
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, exp["expid"], ins.camera_index(camera), 6]))
    dx, dy = rng.uniform(-0.3, 0.3, 2)
    return float(dx), float(dy)


def camera_spectra(cfg, exp, camera):
    """Noiseless input spectra of one camera of one exposure.

    Returns
    -------
    dict
        ``wave`` [nwave]; ``electrons`` [nfiber, nwave] (e-/Å, total into the
        spectrograph, fiber throughput included); for science also ``obj_flux``,
        ``sky_flux`` (1e-17 erg/s/cm²/Å per fiber), ``obj_electrons``,
        ``sky_electrons``, ``fluxcalib`` [nwave] (point-source e-/Å per flux unit,
        no fiber throughput); ``fiber_throughput`` [nfiber, nwave]; for arcs
        ``line_wave``, ``line_electrons``.
    """
    geo = cfg.geometry
    band, spectro = camera[0], int(camera[1:])
    wave = geo.grid(band)
    fibers = ins.FIBERS_PER_PETAL * spectro + np.asarray(geo.fibers)
    thru = fiber_throughput(cfg.seed, fibers, wave)
    out = {"wave": wave, "fibers": fibers, "fiber_throughput": thru,
           "electrons": np.zeros((fibers.size, wave.size))}
    obstype = exp["obstype"]
    if obstype == "FLAT":
        out["electrons"] = targets.flat_lamp(band, wave)[None, :] * thru * exp["exptime"] / 120.0
    elif obstype == "ARC":
        lw, li = arclines.arc_lines(band, exp["lamps"])
        out["line_wave"] = lw
        # the long Cd+Xe arcs run the lamps at a quarter of the short-arc rate so that
        # their 30 s exposures stay below saturation (strongest lines peak ~25k e-/pixel)
        rate = ARC_RATE * (0.25 if tuple(exp["lamps"]) == tuple(arclines.CDXE_LAMPS) else 1.0)
        out["line_electrons"] = li * rate * exp["exptime"]
        out["line_throughput"] = fiber_throughput(cfg.seed, fibers, lw)
    elif obstype == "SCIENCE":
        tlist = _targets(cfg.seed, cfg.tileid, tuple(int(f) for f in fibers))
        step = ins.WAVE_STEP
        sky_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, exp["expid"], 4]))
        sky_sb = targets.sky_spectrum(wave, step, sky_rng, cfg.data_dir, cfg.sky_condition)
        sky_e = sky_sb * targets.sky_electrons_per_brightness(band, wave, exp["exptime"])
        cal_ps = targets.electrons_per_flux(band, wave, exp["exptime"], cfg.airmass, cfg.data_dir)
        obj_flux = np.array([targets.target_spectrum(p, wave, step) for p in tlist])
        # Galactic extinction of every target (issue 12 item 6): truth OBJ_FLUX is the observed flux
        obj_flux = simphot.redden(wave, obj_flux, target_ebv(tlist))
        # a galaxy's share of the fibre light relative to a point source (its size and profile)
        ratio = np.array([targets.fiber_ratio(p) for p in tlist])
        obj_e = obj_flux * cal_ps[None, :] * ratio[:, None]
        out.update(obj_flux=obj_flux, sky_flux=np.broadcast_to(sky_sb * ins.FIBER_AREA_ARCSEC2, obj_flux.shape).copy(),
                   obj_electrons=obj_e * thru, sky_electrons=sky_e[None, :] * thru, fluxcalib=cal_ps,
                   electrons=(obj_e + sky_e[None, :]) * thru)
    return out


def render_camera(cfg, exp, camera, spectra=None):
    """Noiseless electron image (trimmed, cropped) of one camera of one exposure.

    Returns
    -------
    image : ndarray, shape (ny, nx)
    psf : GaussHermitePSF
        The true PSF shifted by this exposure's trace shift.
    spectra : dict
        From :func:`camera_spectra`.
    """
    opt = _optics(camera, cfg.preset, cfg.seed)
    spectra = camera_spectra(cfg, exp, camera) if spectra is None else spectra
    dx, dy = trace_shift(cfg, exp, camera)
    psf = opt.psf.shifted(dx, dy) if (dx or dy) else opt.psf
    nfib = len(spectra["fibers"])
    if exp["obstype"] == "ARC":
        lw = spectra["line_wave"]
        fib = np.repeat(np.arange(nfib), lw.size)
        wave = np.tile(lw, nfib)
        counts = (spectra["line_electrons"][None, :] * spectra["line_throughput"]).ravel()
    elif exp["obstype"] in ("FLAT", "SCIENCE"):
        image = optics.render_grid(psf, spectra["wave"], spectra["electrons"] * ins.WAVE_STEP, opt.shape)
        return image, psf, spectra
    else:
        return np.zeros(opt.shape), psf, spectra
    return optics.render(psf, fib, wave, counts, opt.shape), psf, spectra


def camera_header(cfg, camera, opt):
    """Camera-level keywords (without the amplifier sections)."""
    band, spectro = camera[0], int(camera[1:])
    return {"CAMERA": camera, "SPECGRPH": spectro, "SPECID": spectro + 1, "DETECTOR": f"SIM-{camera}",
            "CCDNAME": f"CCDS{spectro + 1}{band.upper()}", "CCDTEMP": -137.0 if band != "b" else -110.0,
            "DOSVER": "SIM", "FEEVER": "SIM", "CCDTMING": "sim", "CROPROW0": opt.row0, "CROPCOL0": opt.col0,
            "NPIX_X": opt.shape[1], "NPIX_Y": opt.shape[0]}


def simulate_camera_exposure(cfg, exp, camera):
    """Simulate one camera of one exposure.

    Parameters
    ----------
    cfg : NightConfig
    exp : dict
        One entry of :func:`exposure_sequence`.
    camera : str

    Returns
    -------
    dict
        ``raw`` (uint16 [raw rows, raw cols]), ``header`` (camera keywords incl.
        amplifier sections), ``pixels`` (noiseless light electrons, trimmed),
        ``crmask`` (bool), ``spectra`` (:func:`camera_spectra`), ``shift`` (dx, dy),
        ``ccd`` (truth constants), ``psf`` (true PSF of this exposure).
    """
    opt = _optics(camera, cfg.preset, cfg.seed)
    ccd = detector.draw_ccd_truth(camera, cfg.seed, opt.shape, cfg.bad_column)
    pixels, psf, spectra = render_camera(cfg, exp, camera)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, exp["expid"], ins.camera_index(camera)]))
    raw, amp_header, crmask = detector.read_out(pixels, camera, ccd, rng, exp["exptime"], cfg.cosmic_rate)
    header = camera_header(cfg, camera, opt)
    header.update(amp_header)
    return {"raw": raw, "header": header, "pixels": pixels, "crmask": crmask, "spectra": spectra,
            "shift": trace_shift(cfg, exp, camera), "ccd": ccd, "psf": psf}


# ------------------------------------------------------------------------- writers
def write_camera_truth(path, cfg, exp, camera, result, include_pixels=True):
    """Write the per-camera truth file.

    HDUs: ``ELECTRONS`` [nfiber, nwave] (true spectra, e-/Å, the extraction truth),
    ``WAVELENGTH``, ``FIBERFLAT`` (true fiber throughput), for science
    ``OBJ_FLUX``/``SKY_FLUX`` (1e-17 erg/s/cm²/Å per fiber), ``OBJ_ELECTRONS``/
    ``SKY_ELECTRONS`` and ``FLUXCALIB`` (point-source e-/Å per flux unit), for arcs
    an ``ARCLINES`` table; at pixel level ``CRPIX`` (ROW, COL of cosmic-ray pixels)
    and, when ``include_pixels``, ``PIXTRUE`` (noiseless light electrons, float32).
    Header: TRSHIFTX/TRSHIFTY (true trace shift, px), FIBERMIN.
    """
    import fitsio
    sp = result["spectra"]
    dx, dy = result["shift"]
    hdr = {"CAMERA": camera, "EXPID": int(exp["expid"]), "NIGHT": int(cfg.night), "OBSTYPE": exp["obstype"],
           "EXPTIME": float(exp["exptime"]), "TRSHIFTX": float(dx), "TRSHIFTY": float(dy),
           "FIBERMIN": int(sp["fibers"][0]), "BUNIT": "electron/Angstrom"}
    with atomic_path(path) as tmp:
        with fitsio.FITS(tmp, "rw", clobber=True) as out:
            out.write(sp["electrons"].astype(np.float32), extname="ELECTRONS", header=hdr)
            out.write(np.asarray(sp["wave"], dtype=np.float64), extname="WAVELENGTH")
            out.write(sp["fiber_throughput"].astype(np.float32), extname="FIBERFLAT")
            for key, name in (("obj_flux", "OBJ_FLUX"), ("sky_flux", "SKY_FLUX"), ("obj_electrons", "OBJ_ELECTRONS"),
                              ("sky_electrons", "SKY_ELECTRONS"), ("fluxcalib", "FLUXCALIB")):
                if key in sp:
                    out.write(np.asarray(sp[key], dtype=np.float32), extname=name)
            if "line_wave" in sp:
                out.write({"WAVE": np.asarray(sp["line_wave"], dtype=np.float64),
                           "ELECTRONS": np.asarray(sp["line_electrons"], dtype=np.float64)}, extname="ARCLINES")
            if "crmask" in result:
                rows, cols = np.nonzero(result["crmask"])
                out.write({"ROW": rows.astype(np.int32), "COL": cols.astype(np.int32)}, extname="CRPIX")
            if include_pixels and "pixels" in result:
                out.write(result["pixels"].astype(np.float32), extname="PIXTRUE",
                          header={"BUNIT": "electron", "COMMENT": "noiseless light (no dark, no cosmics)"})


def _camera_job(cfg, exp, camera, truth_dir, level, frame_dir):
    """Worker: simulate one camera, write its truth (and frame), return (raw, header) or None."""
    if level == "frame":
        from ..io.frame import write_frame
        from . import frames
        fm = exposure_fibermap(cfg, exp)
        result = frames.simulate_camera_frame(cfg, exp, camera, fm)
        write_frame(paths.findfile("frame", root=frame_dir, night=cfg.night, expid=exp["expid"], camera=camera),
                    result["frame"])
        if truth_dir:
            write_camera_truth(paths.findfile("truth_camera", root=truth_dir, night=cfg.night, expid=exp["expid"],
                                              camera=camera), cfg, exp, camera, result, include_pixels=False)
        return camera, None, None, result["shift"]
    result = simulate_camera_exposure(cfg, exp, camera)
    if truth_dir:
        write_camera_truth(paths.findfile("truth_camera", root=truth_dir, night=cfg.night, expid=exp["expid"],
                                          camera=camera), cfg, exp, camera, result,
                           include_pixels=cfg.truth_pixels)
    return camera, result["raw"], result["header"], result["shift"]


def build_fibermap(cfg, exp):
    """Fibermap (astropy Table) of all simulated fibers of a science exposure."""
    geo = cfg.geometry
    tables = []
    for spectro in geo.spectrographs:
        fibers = ins.FIBERS_PER_PETAL * spectro + np.asarray(geo.fibers)
        fm = empty_fibermap(fibers.size, int(fibers[0]))
        tlist = _targets(cfg.seed, cfg.tileid, tuple(int(f) for f in fibers))
        dec0 = np.deg2rad(TILE_DEC)
        for k, p in enumerate(tlist):
            fm["TARGETID"][k] = p["targetid"]
            fm["OBJTYPE"][k] = p["objtype"]
            fm["DESI_TARGET"][k] = p["desi_target"]
            fm["BGS_TARGET"][k] = 1 if p["kind"] == "BGS" else 0
            ra = TILE_RA + p["dra"] / np.cos(dec0)
            dec = TILE_DEC + p["ddec"]
            fm["TARGET_RA"][k], fm["TARGET_DEC"][k] = ra, dec
            fx, fy = p["dra"] * PLATE_SCALE_MM_PER_DEG, p["ddec"] * PLATE_SCALE_MM_PER_DEG
            fm["FIBERASSIGN_X"][k], fm["FIBERASSIGN_Y"][k] = fx, fy
            fm["FIBER_X"][k], fm["FIBER_Y"][k] = fx + p["fiber_dx"], fy + p["fiber_dy"]
            fm["DELTA_X"][k], fm["DELTA_Y"][k] = p["fiber_dx"], p["fiber_dy"]
            fm["FIBER_RA"][k] = ra + p["fiber_dx"] / PLATE_SCALE_MM_PER_DEG / np.cos(dec0)
            fm["FIBER_DEC"][k] = dec + p["fiber_dy"] / PLATE_SCALE_MM_PER_DEG
            fm["PLATE_RA"][k], fm["PLATE_DEC"][k] = ra, dec
            fm["LAMBDA_REF"][k] = 5400.0
            fm["REF_EPOCH"][k] = 2015.5 if p["kind"] == "STD" else 0.0
            fm["PHOTSYS"][k] = "S"
            fm["RELEASE"][k] = 9010
            fm["BRICKNAME"][k] = "1501p022"
            fm["BRICKID"][k] = 400000
            fm["BRICK_OBJID"][k] = k
            fm["PRIORITY"][k] = {"ELG": 3000, "LRG": 3200, "QSO": 3400, "BGS": 2100, "STD": 0, "SKY": 0}[p["kind"]]
            fm["PRIORITY_INIT"][k] = fm["PRIORITY"][k]
            fm["SUBPRIORITY"][k] = (p["targetid"] % 9973) / 9973.0
            fm["NUMOBS_INIT"][k] = 1
            fm["OBSCONDITIONS"][k] = 1
            fm["FA_TARGET"][k] = p["desi_target"]
            fm["FA_TYPE"][k] = 4 if p["kind"] == "SKY" else 1
            fm["EXPTIME"][k] = exp["exptime"]
            fm["MORPHTYPE"][k] = ("PSF" if p["kind"] in ("QSO", "STD") else "DUP" if p["kind"] == "SKY"
                                  else "DEV" if p.get("sersic") == 4.0 else "EXP")
            if p["kind"] != "SKY":
                # observed DECam photometry of the reddened spectrum (issue 12 item 6)
                pt = p["kind"] in ("QSO", "STD")
                ebv = float(target_ebv([p])[0])
                fm["EBV"][k] = ebv
                if p["kind"] == "STD":
                    fm["MWS_TARGET"][k] = mws_target.mask("GAIA_STD_FAINT")
                phot = simphot.observed_fluxes(lambda w, st, p=p: targets.target_spectrum(p, w, st), ebv)
                for band in "GRZ":
                    nmgy = float(phot[band])
                    fm[f"FLUX_{band}"][k] = nmgy
                    fm[f"FLUX_IVAR_{band}"][k] = 1.0 / (0.02 * nmgy + 0.05) ** 2
                    frac = population.FIBER_FRAC["point"] if pt else p["fiber_frac_ls"]
                    fm[f"FIBERFLUX_{band}"][k] = nmgy * frac
                    fm[f"FIBERTOTFLUX_{band}"][k] = nmgy * frac
                if "mag_w1" in p:
                    # WISE photometry where simulated (LRGs, their selection needs W1): Galactic extinction
                    # A_W1 = 0.184 E(B-V), A_W2 = 0.113 E(B-V) (Legacy Surveys DR9 coefficients, as desitarget's
                    # MW_TRANSMISSION_W1/W2); error ~ 2 % + 2 nanomaggies (approximate unWISE forced photometry)
                    for band, coef in (("W1", 0.184), ("W2", 0.113)):
                        nmgy = 10 ** (-0.4 * (p[f"mag_{band.lower()}"] - 22.5 + coef * ebv))
                        fm[f"FLUX_{band}"][k] = nmgy
                        fm[f"FLUX_IVAR_{band}"][k] = 1.0 / (0.02 * nmgy + 2.0) ** 2
                fm["SHAPE_R"][k] = 0.0 if pt else p["shape_r"]
                fm["SERSIC"][k] = 0.0 if pt else p["sersic"]
                if p["kind"] == "STD":
                    fm["GAIA_PHOT_G_MEAN_MAG"][k] = p["mags"]["R"] + 0.05
                    fm["GAIA_PHOT_BP_MEAN_MAG"][k] = p["mags"]["G"] - 0.1
                    fm["GAIA_PHOT_RP_MEAN_MAG"][k] = p["mags"]["Z"] + 0.1
                    fm["REF_CAT"][k] = "G2"
                    fm["REF_ID"][k] = p["targetid"] % 10 ** 12
        tables.append(fm)
    from astropy.table import vstack
    fm = vstack(tables) if len(tables) > 1 else tables[0]
    return fm


def calibration_fibermap(cfg, exp):
    """Fibermap of a calibration (flat) exposure: every simulated fiber, no target (OBJTYPE 'NON'), FIBERSTATUS 0.

    DESI's flats carry a FIBERMAP too; fiberflat reads its FIBERSTATUS.
    """
    geo = cfg.geometry
    fibers = np.concatenate([ins.FIBERS_PER_PETAL * s + np.asarray(geo.fibers) for s in geo.spectrographs])
    fm = empty_fibermap(int(fibers.max()) + 1)[fibers]
    fm["EXPTIME"] = exp["exptime"]
    return fm


def exposure_fibermap(cfg, exp):
    """Fibermap of a science (:func:`build_fibermap`) or flat (:func:`calibration_fibermap`) exposure, else None."""
    if exp["obstype"] == "SCIENCE":
        return build_fibermap(cfg, exp)
    if exp["obstype"] == "FLAT":
        return calibration_fibermap(cfg, exp)
    return None


def truth_table(cfg):
    """Per-target truth table of the tile (all simulated fibers)."""
    from astropy.table import Table
    rows = []
    for spectro in cfg.geometry.spectrographs:
        fibers = ins.FIBERS_PER_PETAL * spectro + np.asarray(cfg.geometry.fibers)
        rows += _targets(cfg.seed, cfg.tileid, tuple(int(f) for f in fibers))
    param_names = sorted({k for p in rows for k, v in p.items()
                          if isinstance(v, (int, float)) and k not in ("z", "fiber", "targetid", "desi_target", "mag")})
    t = Table()
    t["TARGETID"] = np.array([p["targetid"] for p in rows], dtype=np.int64)
    t["FIBER"] = np.array([p["fiber"] for p in rows], dtype=np.int32)
    t["OBJTYPE"] = [p["objtype"] for p in rows]
    t["TRUEZ"] = np.array([p["z"] for p in rows])
    t["TRUESPECTYPE"] = [p["spectype"] for p in rows]
    t["TRUESUBTYPE"] = [p["subtype"] for p in rows]
    t["TEMPLATETYPE"] = [p["kind"] for p in rows]
    for band in "GRZ":
        t[f"MAG_{band}"] = np.array([p["mags"][band] for p in rows], dtype=np.float32)
        t[f"FLUX_{band}"] = np.float32(10 ** (-0.4 * (t[f"MAG_{band}"] - 22.5)))
    for name in param_names:
        t[f"PAR_{name.upper()}"] = np.array([float(p.get(name, np.nan)) for p in rows])
    return t


def write_exposure_truth(path, cfg, exp, shifts):
    """Write truth-{expid}.fits: TRUTH table (science) and TRACESHIFT table (all exposures)."""
    from astropy.table import Table
    hdr = exposure_header(cfg, exp)
    hdus = [fits.PrimaryHDU()]
    for k, v in hdr.items():
        hdus[0].header[k] = v
    if exp["obstype"] == "SCIENCE":
        hdus.append(table_to_hdu(truth_table(cfg), "TRUTH"))
    cams = sorted(shifts)
    st = Table({"CAMERA": cams, "DX": [shifts[c][0] for c in cams], "DY": [shifts[c][1] for c in cams]})
    hdus.append(table_to_hdu(st, "TRACESHIFT"))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def write_nominal_fluxcalib(path, cfg, camera):
    """Nominal point-source calibration of ``camera`` (e-/Å per 1e-17 erg/s/cm²/Å for 1 s at airmass 1).

    The design throughput (the simulator's throughput curve and aperture model, mean
    fiber throughput) as an instrument team would provide it: it differs from the
    truth of an exposure by the airmass and any throughput drift.  The extinction curve
    included at airmass 1 (the KPNO curve DESI uses, or the parametric one) is stored
    beside it (EXTINCTION HDU), so that the pipeline can move it to an exposure's airmass.
    """
    from ..fluxcalib import FluxCalib
    from ..io.fluxcalib import write_flux_calibration
    band, spectro = camera[0], int(camera[1:])
    wave = cfg.geometry.grid(band)
    fibers = ins.FIBERS_PER_PETAL * spectro + np.arange(ins.FIBERS_PER_PETAL)
    thru = fiber_throughput(cfg.seed, fibers, wave).mean(axis=0)
    cal = targets.electrons_per_flux(band, wave, 1.0, 1.0, cfg.data_dir) * thru
    write_flux_calibration(path, FluxCalib(wave, cal[None, :], np.zeros((1, wave.size)),
                                           header={"CAMERA": camera, "EXPTIME": 1.0, "AIRMASS": 1.0,
                                                   "CALTYPE": "NOMINAL"},
                                           extinction=targets.extinction(wave, cfg.data_dir)))


def write_calibration(cfg, calib_dir, truth_dir):
    """Write ccd-{camera}.yaml, nominal PSFs, the sky template (calib tree), true PSFs + CCD truth (truth tree)."""
    if calib_dir:
        write_sky_template(paths.findfile("calib_sky_template", root=calib_dir),
                           *targets.mean_sky_spectrum(cfg.data_dir))
    for camera in cfg.geometry.cameras:
        opt = _optics(camera, cfg.preset, cfg.seed)
        ccd = detector.draw_ccd_truth(camera, cfg.seed, opt.shape, cfg.bad_column)
        if calib_dir:
            calib = {"camera": camera,
                     "amplifiers": {a: {"gain": ccd["gain"][a], "readnoise": ccd["readnoise"][a],
                                        "saturation": ccd["saturation"]} for a in detector.AMPS},
                     "dark_current": ccd["dark_current"] / 3600.0, "bad_columns": ccd["bad_columns"]}
            write_ccd_calib(paths.findfile("calib_ccd", root=calib_dir, camera=camera), calib)
            write_psf(paths.findfile("calib_psf", root=calib_dir, camera=camera), opt.nominal)
            write_nominal_fluxcalib(paths.findfile("calib_fluxcalib", root=calib_dir, camera=camera), cfg, camera)
        if truth_dir:
            write_psf(paths.findfile("truth_psf", root=truth_dir, camera=camera), opt.psf)
            doc = {"camera": camera, "shape": list(opt.shape), "crop_row0": opt.row0, "crop_col0": opt.col0,
                   "dark_current_e_per_hour": ccd["dark_current"], "saturation_adu": ccd["saturation"],
                   "bad_columns": ccd["bad_columns"],
                   "amplifiers": {a: {"gain": ccd["gain"][a], "readnoise": ccd["readnoise"][a],
                                      "bias": ccd["bias"][a], "bias_slope": ccd["bias_slope"][a]}
                                  for a in detector.AMPS}}
            path = paths.findfile("truth_ccd", root=truth_dir, camera=camera)
            with atomic_path(path) as tmp:
                with open(tmp, "w") as fh:
                    yaml.safe_dump(doc, fh, sort_keys=False)


def simulate_night(cfg, raw_dir=None, calib_dir=None, truth_dir=None, nproc=1, level="raw", frame_dir=None):
    """Simulate and write a night.

    Parameters
    ----------
    cfg : NightConfig
    raw_dir, calib_dir, truth_dir : str or None
        Roots of the raw, calibration and truth trees (a tree is skipped when None).
    nproc : int
        Worker processes (cameras in parallel); output does not depend on it.
    level : {'raw', 'frame'}
        ``frame`` writes extracted frames under ``frame_dir`` instead of raw images.
    frame_dir : str, optional
        Production root for the frame-level mode.

    Returns
    -------
    list of dict
        The exposure sequence.
    """
    if level not in ("raw", "frame"):
        raise ValueError(f"level must be 'raw' or 'frame', got {level!r}")
    if level == "frame" and not frame_dir:
        raise ValueError("level='frame' needs frame_dir")
    seq = exposure_sequence(cfg)
    write_calibration(cfg, calib_dir, truth_dir)
    cameras = cfg.geometry.cameras
    pool = concurrent.futures.ProcessPoolExecutor(nproc) if nproc > 1 else None
    try:
        for exp in seq:
            if level == "frame" and exp["obstype"] not in ("FLAT", "SCIENCE"):
                continue
            hdr = exposure_header(cfg, exp)
            args = [(cfg, exp, cam, truth_dir, level, frame_dir) for cam in cameras]
            if pool is None:
                results = [_camera_job(*a) for a in args]
            else:
                results = list(pool.map(_camera_job, *zip(*args)))
            shifts = {cam: shift for cam, _, _, shift in results}
            if exp["obstype"] in ("SCIENCE", "FLAT") and (raw_dir or frame_dir):
                fm = exposure_fibermap(cfg, exp)
                fm_hdr = {k: hdr[k] for k in ("EXPID", "NIGHT", "TILEID", "TILERA", "TILEDEC", "FLAVOR", "OBSTYPE",
                                               "DATE-OBS", "MJD-OBS", "TARGTRA", "TARGTDEC", "SURVEY", "FAPRGRM",
                                               "PROGRAM", "EXPTIME", "AIRMASS") if k in hdr}
                fm.meta.update(fm_hdr)
                if raw_dir:
                    write_fibermap(paths.findfile("raw_fibermap", root=raw_dir, night=cfg.night, expid=exp["expid"]),
                                   fm, fm_hdr)
            if level == "raw" and raw_dir:
                cams = {cam: (raw, h) for cam, raw, h, _ in results}
                write_raw(paths.findfile("raw", root=raw_dir, night=cfg.night, expid=exp["expid"]), hdr, cams)
            if truth_dir:
                write_exposure_truth(paths.findfile("truth", root=truth_dir, night=cfg.night, expid=exp["expid"]),
                                     cfg, exp, shifts)
            log.info("simulated %s exposure %d (%d cameras)", exp["obstype"], exp["expid"], len(cameras))
    finally:
        if pool is not None:
            pool.shutdown()
    return seq
