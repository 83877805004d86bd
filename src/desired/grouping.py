"""Which cframe rows go into which spectra file: healpix pixels and tile groupings.

A *group* is one output spectra file: a nested HEALPix pixel of one (survey, program)
(``spectra-{survey}-{program}-{healpix}``, every target whose TARGET_RA/TARGET_DEC falls in
the pixel), or, per tile and spectrograph, the ``cumulative`` (all exposures through a
night), ``pernight`` or ``perexp`` tile groupings (every fiber of the petal).

Planning uses only frame metadata (header, wavelength grid, fibermap: see
:func:`desired.io.spectra.read_frame_meta`); :func:`plan_group` returns, per exposure and
spectrograph, which rows of which band's frame go into the file, in DESI's order (frames
sorted by spectrograph, night, expid; fibers in frame order).  The grouping step then copies
those rows one frame at a time, so its memory does not grow with the number of frames.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

log = logging.getLogger(__name__)

#: survey and program used when neither the cframe header nor its fibermap header has one
DEFAULT_SURVEY = "main"
DEFAULT_PROGRAM = "other"
#: tile groupings (desispec's daily tile-based spectra and coadds)
TILE_GROUPINGS = ("cumulative", "pernight", "perexp")
#: fibermap columns desispec resets from NaN to 0 when grouping
_NAN_TO_ZERO = ("FIBER_X", "FIBER_Y", "DELTA_X", "DELTA_Y", "FIBER_RA", "FIBER_DEC",
                "GAIA_PHOT_G_MEAN_MAG", "GAIA_PHOT_BP_MEAN_MAG", "GAIA_PHOT_RP_MEAN_MAG")
#: fibermap header keywords kept in healpix spectra (desispec frames2spectra)
GENERAL_KEYWORDS = ("SURVEY", "PROGRAM", "LONGSTRN", "INSTRUME", "OBSERVAT", "OBS-LAT", "OBS-LONG",
                    "OBS-ELEV", "TELESCOP")


def healpix_pixels(ra, dec, nside=64, nest=True):
    """HEALPix pixel of each (RA, Dec) in degrees; -1 where a coordinate is not finite.

    Nested numbering is computed here (:func:`ang2pix_nest`, identical to healpy's); RING
    numbering goes through healpy.

    Parameters
    ----------
    ra, dec : array, shape (n,)
    nside : int
        A power of 2 for nested numbering.
    nest : bool
        Nested numbering (DESI's convention).

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    ok = np.isfinite(ra) & np.isfinite(dec)
    pix = np.full(ra.shape, -1, dtype=np.int64)
    if ok.any():
        if nest:
            pix[ok] = ang2pix_nest(int(nside), ra[ok], dec[ok])
        else:
            import healpy
            pix[ok] = healpy.ang2pix(int(nside), ra[ok], dec[ok], lonlat=True, nest=False)
    return pix


def _spread_bits(v):
    """Interleave zeros between the bits of ``v`` (int64 array, values < 2**31)."""
    v = v & 0xFFFFFFFF
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    return (v | (v << 1)) & 0x5555555555555555


def ang2pix_nest(nside, ra, dec):
    """Nested HEALPix pixel of (RA, Dec) in degrees (the HEALPix C++ ``loc2pix`` algorithm).

    Gives the same pixels as ``healpy.ang2pix(nside, ra, dec, lonlat=True, nest=True)`` without
    importing healpy (whose import, with matplotlib, costs more CPU than grouping a pixel's
    metadata).

    Parameters
    ----------
    nside : int
        Power of 2.
    ra, dec : array, shape (n,)
        Finite coordinates (degrees).

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    nside = int(nside)
    if nside < 1 or nside & (nside - 1):
        raise ValueError(f"nside {nside} is not a power of 2")
    theta = np.pi / 2 - np.radians(np.asarray(dec, dtype=np.float64))
    phi = np.radians(np.asarray(ra, dtype=np.float64))
    z, sth = np.cos(theta), np.sin(theta)
    have_sth = (theta < 0.01) | (theta > 3.14159 - 0.01)
    za = np.abs(z)
    tt = np.fmod(phi * (2 / np.pi), 4.0)
    tt = np.where(tt < 0, tt + 4.0, tt)
    tt = np.where(tt == 4.0, 0.0, tt)
    ix = np.empty(z.shape, dtype=np.int64)
    iy = np.empty(z.shape, dtype=np.int64)
    face = np.empty(z.shape, dtype=np.int64)
    eq = za <= 2.0 / 3.0
    # equatorial region
    temp1 = nside * (0.5 + tt[eq])
    temp2 = nside * (z[eq] * 0.75)
    jp = (temp1 - temp2).astype(np.int64)
    jm = (temp1 + temp2).astype(np.int64)
    ifp, ifm = jp // nside, jm // nside
    face[eq] = np.where(ifp == ifm, ifp | 4, np.where(ifp < ifm, ifp, ifm + 8))
    ix[eq] = jm & (nside - 1)
    iy[eq] = nside - (jp & (nside - 1)) - 1
    # polar caps
    pol = ~eq
    ntt = np.minimum(3, tt[pol].astype(np.int64))
    tp = tt[pol] - ntt
    zap = za[pol]
    tmp = np.where((zap < 0.99) | ~have_sth[pol], nside * np.sqrt(3 * (1 - zap)),
                   nside * sth[pol] / np.sqrt((1.0 + zap) / 3.0))
    jp = np.minimum((tp * tmp).astype(np.int64), nside - 1)
    jm = np.minimum(((1.0 - tp) * tmp).astype(np.int64), nside - 1)
    north = z[pol] >= 0
    ix[pol] = np.where(north, nside - jm - 1, jp)
    iy[pol] = np.where(north, nside - jp - 1, jm)
    face[pol] = np.where(north, ntt, ntt + 8)
    return face * nside * nside + _spread_bits(ix) + (_spread_bits(iy) << 1)


def survey_program(header, default_survey=DEFAULT_SURVEY, default_program=DEFAULT_PROGRAM):
    """(survey, program) of an exposure, lower case.

    survey: ``SURVEY``, else ``FA_SURV``, else ``default_survey``; program: ``FAPRGRM``, else
    ``FAFLAVOR`` without its survey prefix, else ``default_program`` (the free-text ``PROGRAM``
    keyword of raw data is not used).

    Parameters
    ----------
    header : dict
        cframe HDU0 keywords, completed with the FIBERMAP header's.
    """
    def get(*keys):
        for k in keys:
            v = header.get(k)
            if v is not None and str(v).strip() and str(v).strip().lower() not in ("unknown", "none"):
                return str(v).strip().lower()
        return None
    survey = get("SURVEY", "FA_SURV") or default_survey
    program = get("FAPRGRM")
    if program is None:
        flavor = get("FAFLAVOR")
        if flavor:
            program = flavor[len(survey):] if flavor.startswith(survey) and len(flavor) > len(survey) else flavor
    return survey, program or default_program


@dataclasses.dataclass
class FrameMeta:
    """Metadata of one cframe (see :func:`desired.io.spectra.read_frame_meta`)."""

    path: str
    camera: str
    night: int
    expid: int
    tileid: int
    survey: str
    program: str
    wave: np.ndarray
    ndiag: int
    fibermap: np.ndarray
    header: dict
    scores_columns: tuple = ()
    units: dict = dataclasses.field(default_factory=dict)
    layout: dict = dataclasses.field(default_factory=dict)

    @property
    def band(self):
        return self.camera[0]

    @property
    def spectrograph(self):
        return int(self.camera[1:])


def frame_meta(path, meta, default_survey=DEFAULT_SURVEY, default_program=DEFAULT_PROGRAM):
    """Build a :class:`FrameMeta` from :func:`desired.io.spectra.read_frame_meta` output.

    Raises
    ------
    ValueError
        If the header lacks CAMERA, NIGHT or EXPID (the message names the file).
    """
    hdr = meta["header"]
    for key in ("CAMERA", "NIGHT", "EXPID"):
        if key not in hdr:
            raise ValueError(f"{path}: header lacks {key}")
    survey, program = survey_program(hdr, default_survey, default_program)
    return FrameMeta(path=str(path), camera=str(hdr["CAMERA"]).lower(), night=int(hdr["NIGHT"]),
                     expid=int(hdr["EXPID"]), tileid=int(hdr.get("TILEID", -1)), survey=survey, program=program,
                     wave=meta["wave"], ndiag=meta["ndiag"], fibermap=meta["fibermap"], header=dict(hdr),
                     scores_columns=tuple(meta.get("scores_columns", ())), units=dict(meta.get("units", {})),
                     layout=dict(meta.get("layout", {})))


def check_wavelengths(frames):
    """Reference grid of each band; raise ValueError naming the file whose grid differs.

    The reference of a band is the grid most of its frames share.
    """
    grids = {}
    for fm in frames:
        grids.setdefault(fm.band, []).append(fm)
    ref = {}
    for band, members in grids.items():
        keys = [f"{m.wave.size}:{m.wave[0]:.4f}:{m.wave[-1]:.4f}" for m in members]
        counts = {k: keys.count(k) for k in keys}
        common = max(counts, key=lambda k: (counts[k], -keys.index(k)))
        reference = members[keys.index(common)]
        ref[band] = reference.wave
        for m in members:
            if m.wave.size != reference.wave.size or not np.allclose(m.wave, reference.wave, rtol=0, atol=1e-4):
                raise ValueError(f"{m.path}: wavelength grid of camera {m.camera} ({m.wave.size} pixels, "
                                 f"{m.wave[0]:.2f}-{m.wave[-1]:.2f} A) differs from the other {band} cameras' "
                                 f"({reference.wave.size} pixels, {reference.wave[0]:.2f}-{reference.wave[-1]:.2f} A, "
                                 f"e.g. {reference.path})")
    return ref


@dataclasses.dataclass
class Piece:
    """Rows of one (spectrograph, night, expid) in a group: ``frames[band]`` is a FrameMeta or None (missing)."""

    key: tuple
    rows: np.ndarray
    frames: dict
    start: int = 0


def _select_rows(fm, group):
    """Rows of a frame that belong to ``group`` (a dict, see :func:`plan_group`)."""
    if group["kind"] == "healpix":
        if (fm.survey, fm.program) != (group["survey"], group["program"]):
            return np.zeros(0, dtype=np.int64)
        pix = healpix_pixels(fm.fibermap["TARGET_RA"], fm.fibermap["TARGET_DEC"], group["nside"], group["nest"])
        return np.flatnonzero(pix == int(group["healpix"]))
    if fm.tileid != int(group["tileid"]) or fm.spectrograph != int(group["spectrograph"]):
        return np.zeros(0, dtype=np.int64)
    kind, value = group["kind"], int(group["value"])
    ok = {"cumulative": fm.night <= value, "pernight": fm.night == value, "perexp": fm.expid == value}[kind]
    return np.arange(len(fm.fibermap)) if ok else np.zeros(0, dtype=np.int64)


def plan_group(frames, group):
    """Which rows of which frames make one spectra file, in DESI's row order.

    Parameters
    ----------
    frames : list of FrameMeta
        Candidate cframes (any superset of the group's frames).
    group : dict
        ``{'kind': 'healpix', 'healpix': p, 'nside': 64, 'nest': True, 'survey': s, 'program': p}``
        or ``{'kind': 'cumulative'|'pernight'|'perexp', 'tileid': t, 'spectrograph': s,
        'value': night_or_expid}``.

    Returns
    -------
    bands : list of str
        Bands present among the group's frames, sorted (b, r, z).
    waves : dict band -> array
    pieces : list of Piece
        One per (spectrograph, night, expid), sorted; ``start`` is its first output row.
        A band without a frame for that exposure is None (rows written with ivar 0 and
        mask NODATA).

    Raises
    ------
    ValueError
        If a frame's wavelength grid differs from its band's, or two frames of one
        exposure and spectrograph disagree on the selected rows' TARGETIDs.
    """
    by_key = {}
    for fm in frames:
        rows = _select_rows(fm, group)
        if rows.size:
            by_key.setdefault((fm.spectrograph, fm.night, fm.expid), {})[fm.band] = (fm, rows)
    used = [fm for d in by_key.values() for fm, _ in d.values()]
    waves = check_wavelengths(used) if used else {}
    bands = sorted(waves)
    pieces, start = [], 0
    for key in sorted(by_key):
        entries = by_key[key]
        fm0, rows = entries[sorted(entries)[0]]
        tids = np.asarray(fm0.fibermap["TARGETID"])[rows]
        for band, (fm, r) in entries.items():
            if not np.array_equal(np.asarray(fm.fibermap["TARGETID"])[r], tids):
                raise ValueError(f"{fm.path}: selected TARGETIDs differ from {fm0.path} of the same exposure")
        frames_of = {b: entries[b][0] if b in entries else None for b in bands}
        missing = [b for b in bands if frames_of[b] is None]
        if missing:
            log.warning("exposure %d spectrograph %d has no %s camera: its rows get ivar 0 and mask NODATA there",
                        key[2], key[0], ",".join(missing))
        pieces.append(Piece(key=key, rows=rows, frames=frames_of, start=start))
        start += rows.size
    return bands, waves, pieces


def group_fibermap(pieces, onetile=False):
    """FIBERMAP of a group: the selected fibermap rows, with NIGHT, EXPID, MJD, TILEID (and EXPTIME).

    FIBERSTATUS is OR-ed over the cameras of each exposure; NaN fiber positions and Gaia
    magnitudes are set to 0 (as desispec does).  Columns missing from some frames are dropped.

    Returns
    -------
    fibermap : numpy structured array, shape (nspec,)
        Strings as bytes, column order of the first frame's fibermap.
    units : dict
        Column -> unit (TUNIT) of the first frame that gives one.
    """
    parts, units = [], {}
    for piece in pieces:
        present = [fm for fm in piece.frames.values() if fm is not None]
        fm0 = present[0]
        src = fm0.fibermap[piece.rows]
        cols = {name: src[name] for name in src.dtype.names}
        if "FIBERSTATUS" in cols:
            status = np.array(cols["FIBERSTATUS"])
            for fm in present[1:]:
                status |= np.asarray(fm.fibermap["FIBERSTATUS"])[piece.rows].astype(status.dtype)
            cols["FIBERSTATUS"] = status
        hdr, n = fm0.header, piece.rows.size
        for col, value, dtype in (("NIGHT", fm0.night, "i4"), ("EXPID", fm0.expid, "i4"),
                                  ("MJD", hdr.get("MJD-OBS", 0.0), "f8"), ("TILEID", fm0.tileid, "i4")):
            cols.setdefault(col, np.full(n, value, dtype=dtype))
        if "EXPTIME" in hdr:
            cols.setdefault("EXPTIME", np.full(n, float(hdr["EXPTIME"])))
        parts.append(cols)
        for k, v in fm0.units.items():
            units.setdefault(k, v)
    if not parts:
        return np.zeros(0, dtype=[("TARGETID", "i8")]), {}
    common = [c for c in parts[0] if all(c in p for p in parts)]
    dropped = {c for p in parts for c in p} - set(common)
    if dropped:
        log.warning("fibermap columns missing from some frames are dropped: %s", ", ".join(sorted(dropped)))
    columns = {c: np.concatenate([p[c] for p in parts]) for c in common}
    out = np.zeros(len(columns[common[0]]), dtype=[(c, v.dtype, v.shape[1:]) for c, v in columns.items()])
    for c, v in columns.items():
        out[c] = v
    for col in _NAN_TO_ZERO:
        if col in common and out.dtype[col].kind == "f":
            out[col][~np.isfinite(out[col])] = 0
    return out, {k: v for k, v in units.items() if k in common}


def fibermap_table(fibermap, units=None, decode=True):
    """astropy Table (a copy) of a structured fibermap with ``units`` set; strings decoded unless ``decode`` is False."""
    from astropy.table import Table
    table = Table(fibermap, copy=True)
    if decode:
        table.convert_bytestring_to_unicode()
    for name, unit in (units or {}).items():
        try:
            table[name].unit = unit
        except ValueError:
            pass
    return table


def group_header(group, pieces, nside=None):
    """HDU0 keywords of a group's spectra/coadd file (SPGRP, SPGRPVAL, HPX*/TILEID, SURVEY, PROGRAM)."""
    hdr = {}
    if group["kind"] == "healpix":
        hdr.update(SPGRP="healpix", SPGRPVAL=int(group["healpix"]), HPXPIXEL=int(group["healpix"]),
                   HPXNSIDE=int(group["nside"]), HPXNEST=bool(group["nest"]),
                   SURVEY=group["survey"], PROGRAM=group["program"])
    else:
        hdr.update(SPGRP=group["kind"], SPGRPVAL=int(group["value"]), TILEID=int(group["tileid"]),
                   SPECTRO=int(group["spectrograph"]), PETAL=int(group["spectrograph"]))
        if group["kind"] != "perexp":
            hdr["NIGHT"] = int(group["value"])
        present = [fm for p in pieces for fm in p.frames.values() if fm is not None]
        if present:
            hdr["SURVEY"], hdr["PROGRAM"] = present[0].survey, present[0].program
            for key in ("TILERA", "TILEDEC"):
                if key in present[0].header:
                    hdr[key] = present[0].header[key]
    hdr["LONGSTRN"] = "OGIP 1.0"
    files = sorted({fm.path for p in pieces for fm in p.frames.values() if fm is not None})
    import os
    for i, path in enumerate(files[:1000]):
        hdr[f"INFIL{i:03d}"] = os.path.basename(path)
    return hdr


def exposure_groups(frames, nside=64, nest=True):
    """Every (survey, program, healpix) any of ``frames`` contributes to, sorted."""
    out = set()
    for fm in frames:
        pix = healpix_pixels(fm.fibermap["TARGET_RA"], fm.fibermap["TARGET_DEC"], nside, nest)
        for p in np.unique(pix[pix >= 0]):
            out.add((fm.survey, fm.program, int(p)))
    return sorted(out)


def exposure_healpix_groups(ra, dec, fibers, header, nside=64, nest=True, default_survey=DEFAULT_SURVEY,
                            default_program=DEFAULT_PROGRAM):
    """The healpix groups one exposure feeds and the spectrographs that feed each.

    Parameters
    ----------
    ra, dec : array, shape (nfiber,)
        TARGET_RA/TARGET_DEC (deg) of the exposure's fibermap.
    fibers : int array, shape (nfiber,)
        FIBER (spectrograph = FIBER // 500).
    header : dict
        Fibermap/exposure keywords (survey and program, see :func:`survey_program`).

    Returns
    -------
    dict
        ``(survey, program, healpix) -> sorted tuple of spectrographs``.
    """
    survey, program = survey_program(header, default_survey, default_program)
    pix = healpix_pixels(ra, dec, nside, nest)
    spectro = np.asarray(fibers, dtype=np.int64) // 500
    ok = pix >= 0
    out = {}
    for p, s in set(zip(pix[ok].tolist(), spectro[ok].tolist())):
        out.setdefault((survey, program, int(p)), set()).add(int(s))
    return {k: tuple(sorted(v)) for k, v in sorted(out.items())}


def healpix_members(exposures):
    """The cameras of the exposures feeding each healpix group.

    Parameters
    ----------
    exposures : iterable of (int, int, sequence of str, dict)
        ``(night, expid, cameras, groups)`` per science exposure, ``groups`` as returned by
        :func:`exposure_healpix_groups` (group -> spectrographs).

    Returns
    -------
    dict
        ``(survey, program, healpix) -> sorted list of (night, expid, camera)``, sorted by
        group; groups that none of the exposure's cameras feed are left out.
    """
    index = {}
    for night, expid, cameras, groups in exposures:
        for group, spectros in groups.items():
            index.setdefault(group, []).extend((night, expid, c) for c in cameras if int(c[1:]) in spectros)
    return {g: sorted(v) for g, v in sorted(index.items()) if v}


def tile_groups(exposures, groupings=TILE_GROUPINGS):
    """Tile groupings of a set of exposures.

    Parameters
    ----------
    exposures : iterable of (night, expid, tileid, spectrographs)
    groupings : iterable of str
        Subset of :data:`TILE_GROUPINGS`.

    Returns
    -------
    dict
        ``(kind, tileid, spectrograph, value) -> sorted list of (night, expid)`` with value the
        night (cumulative: exposures of nights up to it; pernight) or the expid (perexp).
        Exposures with a negative TILEID are skipped.
    """
    by_tile = {}
    for night, expid, tileid, spectros in exposures:
        if int(tileid) < 0:
            continue
        for s in spectros:
            by_tile.setdefault((int(tileid), int(s)), []).append((int(night), int(expid)))
    out = {}
    for (tileid, s), exps in by_tile.items():
        exps = sorted(set(exps))
        nights = sorted({n for n, _ in exps})
        if "cumulative" in groupings:
            for n in nights:
                out["cumulative", tileid, s, n] = [e for e in exps if e[0] <= n]
        if "pernight" in groupings:
            for n in nights:
                out["pernight", tileid, s, n] = [e for e in exps if e[0] == n]
        if "perexp" in groupings:
            for e in exps:
                out["perexp", tileid, s, e[1]] = [e]
    return dict(sorted(out.items()))
