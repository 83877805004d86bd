"""spectra and coadd files (desi-datamodel.md §13 and §14).

Layout as written: empty PRIMARY (keywords), ``FIBERMAP``, ``EXP_FIBERMAP`` (coadds
only), then for each band ``{B}_WAVELENGTH`` (float64), ``{B}_FLUX`` and ``{B}_IVAR``
(float32 [nspec, nwave]), ``{B}_MASK`` (int32), ``{B}_RESOLUTION`` (float32
[nspec, ndiag, nwave]), optional ``{B}_MODEL``, then ``SCORES`` and ``EXTRA_CATALOG``.
"""
from __future__ import annotations

import os

import logging
import re

import numpy as np

from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits, read_array

#: BUNIT of calibrated fluxes (the value of desired.io.frame.CFRAME_UNITS; astropy, scipy are imported only
#: by the functions that need them, so that group-spectra, which needs neither, does not pay their import)
CFRAME_UNITS = "10**-17 erg/(s cm2 Angstrom)"


def ivar_units(units):
    """BUNIT of the inverse variance of ``units`` (see :func:`desired.io.frame.ivar_units`)."""
    from .frame import ivar_units as frame_ivar_units
    return frame_ivar_units(units)

log = logging.getLogger(__name__)

_TABLES = ("FIBERMAP", "EXP_FIBERMAP", "SCORES", "EXTRA_CATALOG")
_ARRAY_HDU = re.compile(r"^(.+)_(WAVELENGTH|FLUX|IVAR|MASK|RESOLUTION|MODEL)$")


def write_spectra(path, spectra, units=None):
    """Write a spectra file, or a coadd file when ``spectra.exp_fibermap`` is set.

    Parameters
    ----------
    path : str
        Output file; written atomically.
    spectra : desired.spectra.Spectra
    units : str, optional
        BUNIT of the fluxes; 1e-17 erg/s/cm2/Angstrom by default.
    """
    from astropy.io import fits

    from .fibermap import build_header, table_to_hdu
    units = units or CFRAME_UNITS
    hdus = [fits.PrimaryHDU(header=build_header(spectra.header))]
    if spectra.fibermap is not None:
        hdus.append(table_to_hdu(spectra.fibermap, "FIBERMAP"))
    if spectra.exp_fibermap is not None:
        hdus.append(table_to_hdu(spectra.exp_fibermap, "EXP_FIBERMAP"))
    for band in spectra.bands:
        b = band.upper()
        hdus.append(fits.ImageHDU(spectra.wave[band].astype(np.float64),
                                  header=build_header(None, f"{b}_WAVELENGTH", "Angstrom")))
        hdus.append(fits.ImageHDU(spectra.flux[band].astype(np.float32), header=build_header(None, f"{b}_FLUX", units)))
        hdus.append(fits.ImageHDU(spectra.ivar[band].astype(np.float32),
                                  header=build_header(None, f"{b}_IVAR", ivar_units(units))))
        hdus.append(fits.ImageHDU(spectra.mask[band].astype(np.int32), header=build_header(None, f"{b}_MASK")))
        if spectra.resolution_data is not None:
            hdus.append(fits.ImageHDU(spectra.resolution_data[band].astype(np.float32),
                                      header=build_header(None, f"{b}_RESOLUTION")))
        if spectra.model is not None:
            hdus.append(fits.ImageHDU(spectra.model[band].astype(np.float32),
                                      header=build_header(None, f"{b}_MODEL", units)))
    if spectra.scores is not None:
        hdus.append(table_to_hdu(spectra.scores, "SCORES"))
    if spectra.extra_catalog is not None:
        hdus.append(table_to_hdu(spectra.extra_catalog, "EXTRA_CATALOG"))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_spectra(path):
    """Read a spectra or coadd file (ours or desispec's).

    Parameters
    ----------
    path : str

    Returns
    -------
    desired.spectra.Spectra
        Bands lower-cased in file order; ``exp_fibermap`` set for coadds.

    Raises
    ------
    DataModelError
        Unreadable file, a band without WAVELENGTH/FLUX/IVAR, or inconsistent shapes
        (between arrays of a band, between bands, or with the tables).
    """
    from ..spectra import Spectra
    from .fibermap import read_table
    with open_fits(path) as hdus:
        header = fits_header_to_dict(hdus[0].header)
        header.pop("EXTNAME", None)
        arrays, tables, bands = {}, {}, []
        for i, hdu in enumerate(hdus[1:], start=1):
            name = hdu.name.strip().upper()
            if not name:
                raise DataModelError(path, f"HDU {i} has no EXTNAME")
            if name in _TABLES:
                tables[name] = read_table(hdus, i, path)
                continue
            match = _ARRAY_HDU.match(name)
            if match is None:
                log.warning("%s: skipping unknown HDU %s", path, name)
                continue
            band, kind = match.group(1).lower(), match.group(2)
            if band not in bands:
                bands.append(band)
            arrays[band, kind] = read_array(hdus, i, path)
    if not bands:
        raise DataModelError(path, "no {BAND}_WAVELENGTH/FLUX/IVAR HDUs")
    nspec = None
    for band in bands:
        for kind in ("WAVELENGTH", "FLUX", "IVAR"):
            if (band, kind) not in arrays:
                raise DataModelError(path, f"missing HDU {band.upper()}_{kind}")
        wave, flux = arrays[band, "WAVELENGTH"], arrays[band, "FLUX"]
        if wave.ndim != 1 or flux.ndim != 2 or flux.shape[1] != wave.size:
            raise DataModelError(path, f"{band.upper()}_FLUX has shape {flux.shape} but "
                                       f"{band.upper()}_WAVELENGTH has {wave.size} entries")
        for kind in ("IVAR", "MASK", "MODEL"):
            if (band, kind) in arrays and arrays[band, kind].shape != flux.shape:
                raise DataModelError(path, f"{band.upper()}_{kind} has shape {arrays[band, kind].shape}, "
                                           f"expected {flux.shape}")
        res = arrays.get((band, "RESOLUTION"))
        if res is not None and (res.ndim != 3 or res.shape[0] != flux.shape[0] or res.shape[2] != wave.size):
            raise DataModelError(path, f"{band.upper()}_RESOLUTION has shape {res.shape}, "
                                       f"expected ({flux.shape[0]}, ndiag, {wave.size})")
        if nspec is not None and flux.shape[0] != nspec:
            raise DataModelError(path, f"{band.upper()}_FLUX has {flux.shape[0]} spectra, other bands {nspec}")
        nspec = flux.shape[0]
    for name in ("FIBERMAP", "SCORES", "EXTRA_CATALOG"):
        if name in tables and len(tables[name]) != nspec:
            raise DataModelError(path, f"{name} has {len(tables[name])} rows but the spectra {nspec}")

    def collect(kind):
        if not all((b, kind) in arrays for b in bands):
            return None
        return {b: arrays[b, kind] for b in bands}

    return Spectra(bands, collect("WAVELENGTH"), collect("FLUX"), collect("IVAR"), mask={b: arrays.get((b, "MASK")) for b in bands},
                   resolution_data=collect("RESOLUTION"), fibermap=tables.get("FIBERMAP"),
                   exp_fibermap=tables.get("EXP_FIBERMAP"), scores=tables.get("SCORES"),
                   extra_catalog=tables.get("EXTRA_CATALOG"), header=header, model=collect("MODEL"))


# ---------------------------------------------------------------- streaming (group-spectra, coadd)
#: header keywords of a cframe that grouping needs
FRAME_META_KEYWORDS = ("CAMERA", "NIGHT", "EXPID", "TILEID", "MJD-OBS", "EXPTIME", "SURVEY", "FAPRGRM", "PROGRAM",
                       "FA_SURV", "FAFLAVOR", "BUNIT", "SPECGRPH", "TILERA", "TILEDEC")


def _fitsio_table(data, header=None):
    """astropy Table of a fitsio structured array, byte strings decoded, TUNITn units kept."""
    from astropy.table import Table
    table = Table(data)
    table.convert_bytestring_to_unicode()
    if header is not None:
        for i, name in enumerate(table.colnames, start=1):
            unit = header.get(f"TUNIT{i}")
            if unit:
                try:
                    table[name].unit = unit
                except ValueError:
                    pass
    return table


#: image kinds of a cframe / spectra band, their HDU names and their dtype on disk in spectra files (FITS: big-endian)
IMAGE_KINDS = ("flux", "ivar", "mask", "resolution")
_FRAME_HDU = {"flux": "FLUX", "ivar": "IVAR", "mask": "MASK", "resolution": "RESOLUTION"}
DISK_DTYPES = {"flux": np.dtype(">f4"), "ivar": np.dtype(">f4"), "mask": np.dtype(">i4"),
               "resolution": np.dtype(">f4")}
_BITPIX = {np.dtype(">f4"): -32, np.dtype(">f8"): -64, np.dtype(">i4"): 32, np.dtype(">i2"): 16,
           np.dtype(">i8"): 64, np.dtype("u1"): 8}


def _raw_offset(path, hdu, kind):
    """Byte offset of ``hdu``'s data when its rows can be copied as bytes into a spectra file, else None.

    That is when the file is not compressed (no .gz/.fz), the HDU is not a compressed image and
    its on-disk type is the spectra file's (BITPIX -32 for flux/ivar/resolution, 32 for mask,
    without BZERO/BSCALE).
    """
    if str(path).endswith((".gz", ".fz", ".bz2")):
        return None
    info = hdu.get_info()
    want = _BITPIX[DISK_DTYPES[kind]]
    if info.get("is_compressed_image") or info.get("img_type") != want or info.get("img_equiv_type") != want:
        return None
    return int(hdu.get_offsets()["data_start"])


def read_frame_meta(path):
    """Read what grouping needs from a cframe without its images.

    Parameters
    ----------
    path : str

    Returns
    -------
    dict
        ``header`` (HDU0 keywords of :data:`FRAME_META_KEYWORDS` present, completed by the
        FIBERMAP header's SURVEY/FAPRGRM/FA_SURV/FAFLAVOR), ``wave`` (nwave,), ``nspec``,
        ``ndiag``, ``fibermap`` (numpy structured array, strings as bytes), ``units`` (column ->
        TUNIT), ``scores_columns`` (tuple of SCORES column names, empty without SCORES),
        ``layout`` (kind -> byte offset of the FLUX/IVAR/MASK/RESOLUTION data for a raw row copy,
        or None where the rows must be decoded: see :func:`copy_frame_rows`).

    Raises
    ------
    DataModelError
        Unreadable file, missing FLUX/IVAR/WAVELENGTH/RESOLUTION/FIBERMAP, or a FIBERMAP without
        TARGETID, TARGET_RA or TARGET_DEC, or with a row count different from FLUX.
    """
    import fitsio
    try:
        with fitsio.FITS(path) as fits:
            names = {hdu.get_extname().upper(): hdu for hdu in fits}
            hdr0 = fits[0].read_header()
            header = {k: hdr0[k] for k in FRAME_META_KEYWORDS if k in hdr0}
            for name in ("FLUX", "IVAR", "WAVELENGTH", "RESOLUTION", "FIBERMAP"):
                if name not in names and not (name == "FLUX" and fits[0].has_data()):
                    raise DataModelError(path, f"missing HDU {name}")
            images = {k: (fits[0] if k == "flux" and fits[0].has_data() else names.get(_FRAME_HDU[k]))
                      for k in IMAGE_KINDS}
            dims = images["flux"].get_dims()
            wave = np.asarray(fits["WAVELENGTH"].read(), dtype=np.float64)
            rdims = images["resolution"].get_dims()
            fmhdu = names["FIBERMAP"]
            fibermap = fmhdu.read()
            fmhdr = fmhdu.read_header()
            units = {}
            for i, col in enumerate(fibermap.dtype.names or (), start=1):
                if fmhdr.get(f"TUNIT{i}"):
                    units[col] = str(fmhdr[f"TUNIT{i}"]).strip()
            for key in ("SURVEY", "FAPRGRM", "FA_SURV", "FAFLAVOR"):
                if key not in header and key in fmhdr:
                    header[key] = fmhdr[key]
            scores = tuple(names["SCORES"].get_colnames()) if "SCORES" in names else ()
            layout = {k: None if hdu is None else _raw_offset(path, hdu, k) for k, hdu in images.items()}
            layout["mask_present"] = images["mask"] is not None
    except DataModelError:
        raise
    except (OSError, ValueError, KeyError) as err:
        raise DataModelError(path, f"unreadable cframe ({type(err).__name__}: {err})") from None
    nspec = int(dims[0])
    colnames = fibermap.dtype.names or ()
    missing = [c for c in ("TARGETID", "TARGET_RA", "TARGET_DEC") if c not in colnames]
    if missing:
        raise DataModelError(path, f"FIBERMAP lacks column(s) {', '.join(missing)} needed for grouping")
    if len(fibermap) != nspec or int(dims[1]) != wave.size:
        raise DataModelError(path, f"FIBERMAP has {len(fibermap)} rows and WAVELENGTH {wave.size} entries "
                                   f"for FLUX of shape {tuple(dims)}")
    if len(rdims) != 3 or int(rdims[0]) != nspec or int(rdims[2]) != wave.size:
        raise DataModelError(path, f"RESOLUTION has shape {tuple(rdims)}, expected ({nspec}, ndiag, {wave.size})")
    return {"header": header, "wave": wave, "nspec": nspec, "ndiag": int(rdims[1]), "fibermap": fibermap,
            "units": units, "scores_columns": scores, "layout": layout}


def _row_runs(rows):
    """(first, stop, out_first) of each run of consecutive values in sorted ``rows``."""
    rows = np.asarray(rows, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    firsts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [rows.size]])
    return [(int(rows[a]), int(rows[b - 1]) + 1, int(a)) for a, b in zip(firsts, stops)]


def copy_frame_rows(path, rows, dest, layout):
    """Copy the image rows ``rows`` of a cframe into preallocated arrays (only those rows are read).

    Where ``layout`` gives a byte offset the rows' bytes are read straight into ``dest`` (FITS
    data are big-endian, as ``dest`` is: no conversion); otherwise the rows are decoded by
    fitsio (compressed, gzipped or differently typed HDUs) and converted.

    Parameters
    ----------
    path : str
    rows : int array, shape (n,)
        Sorted row indices.
    dest : dict kind -> array
        For kinds of :data:`IMAGE_KINDS`: C-contiguous arrays of shape (n, nwave) or
        (n, ndiag, nwave) with the frame's shapes, dtype :data:`DISK_DTYPES`.
    layout : dict
        ``read_frame_meta(path)["layout"]``.

    Raises
    ------
    DataModelError
        Unreadable or truncated file.
    """
    runs = _row_runs(rows)
    decode = []
    for kind, out in dest.items():
        if not out.flags.c_contiguous or out.dtype != DISK_DTYPES[kind]:
            raise ValueError(f"copy_frame_rows: destination {kind} must be C-contiguous {DISK_DTYPES[kind]}")
    try:
        with open(path, "rb") as fh:
            for kind, out in dest.items():
                if kind == "mask" and not layout.get("mask_present", True):
                    out[...] = 0
                    continue
                offset = layout.get(kind)
                if offset is None:
                    decode.append(kind)
                    continue
                rowbytes = out[0].nbytes if len(out) else 0
                for first, stop, at in runs:
                    fh.seek(offset + first * rowbytes)
                    view = out[at:at + stop - first].reshape(-1).view(np.uint8)
                    if fh.readinto(view) != view.nbytes:
                        raise DataModelError(path, f"truncated {_FRAME_HDU[kind]} data")
        if decode:
            _decode_frame_rows(path, rows, {k: dest[k] for k in decode})
    except DataModelError:
        raise
    except (OSError, ValueError) as err:
        raise DataModelError(path, f"cannot read rows of cframe ({type(err).__name__}: {err})") from None


def _decode_frame_rows(path, rows, dest):
    """fitsio read of the row range of ``rows`` of each HDU in ``dest``, then the rows taken."""
    import fitsio
    rows = np.asarray(rows, dtype=np.int64)
    lo, hi = int(rows.min()), int(rows.max()) + 1
    with fitsio.FITS(path) as fits:
        for kind, out in dest.items():
            hdu = fits[0] if kind == "flux" and fits[0].has_data() else fits[_FRAME_HDU[kind]]
            if lo == 0 and hi == int(hdu.get_dims()[0]):
                data = hdu.read()
            else:
                data = hdu[lo:hi, :, :] if kind == "resolution" else hdu[lo:hi, :]
            out[...] = data[rows - lo]


def read_frame_scores(path, rows):
    """SCORES rows of a cframe (structured array), or None without a SCORES HDU."""
    import fitsio
    try:
        with fitsio.FITS(path) as fits:
            if "SCORES" not in {hdu.get_extname().upper() for hdu in fits}:
                return None
            return fits["SCORES"].read(rows=np.asarray(rows, dtype=np.int64))
    except (OSError, ValueError) as err:
        raise DataModelError(path, f"cannot read SCORES of cframe ({type(err).__name__}: {err})") from None


def native_inplace(array):
    """``array`` in native byte order, byte-swapped in place when it is not (no copy; ``array`` is consumed)."""
    if array.dtype.isnative:
        return array
    array.byteswap(inplace=True)
    return array.view(array.dtype.newbyteorder("="))


def _read_raw_image(path, hdu, dtype):
    """Read a whole image HDU as bytes into a native array of ``dtype`` (byte-swapped in place); None if not raw."""
    info = hdu.get_info()
    disk = np.dtype(dtype).newbyteorder(">")
    want = _BITPIX.get(disk)
    if str(path).endswith((".gz", ".fz", ".bz2")) or info.get("is_compressed_image") or want is None \
            or info.get("img_type") != want or info.get("img_equiv_type") != want:
        return None
    out = np.empty(tuple(int(d) for d in hdu.get_dims()), dtype=disk)
    with open(path, "rb") as fh:
        fh.seek(int(hdu.get_offsets()["data_start"]))
        view = out.reshape(-1).view(np.uint8)
        if fh.readinto(view) != view.nbytes:
            raise DataModelError(path, f"truncated {hdu.get_extname()} data")
    return native_inplace(out)


def _copy_range(src_fd, fh, offset, nbytes, path):
    """Append ``nbytes`` of ``src_fd`` from ``offset`` to the unbuffered file ``fh`` (kernel copy when possible)."""
    import os
    out_fd = fh.fileno()
    done = 0
    try:
        while done < nbytes:
            n = os.copy_file_range(src_fd, out_fd, nbytes - done, offset + done)
            if n == 0:
                break
            done += n
    except OSError:                       # no in-kernel copy here (other filesystem, old kernel): read + write
        while done < nbytes:
            chunk = os.pread(src_fd, min(nbytes - done, 1 << 24), offset + done)
            if not chunk:
                break
            fh.write(chunk)
            done += len(chunk)
    if done != nbytes:
        raise DataModelError(path, f"truncated data: {done} of {nbytes} bytes at offset {offset}")


def _card(key, value):
    """One 80-character FITS header card (int, bool or str value)."""
    if isinstance(value, bool):
        text = f"{'T' if value else 'F':>20s}"
    elif isinstance(value, (int, np.integer)):
        text = f"{int(value):>20d}"
    else:
        text = "'" + f"{str(value).replace(chr(39), chr(39) * 2):8s}" + "'"
    card = f"{key:8s}= {text}"
    if len(card) > 80:
        raise ValueError(f"header card too long: {card}")
    return f"{card:80s}"


def image_hdu_bytes(extname, shape, dtype, bunit=None):
    """Header block (bytes, a multiple of 2880) of an image extension of ``shape`` and big-endian ``dtype``."""
    cards = [_card("XTENSION", "IMAGE"), _card("BITPIX", _BITPIX[np.dtype(dtype)]), _card("NAXIS", len(shape))]
    cards += [_card(f"NAXIS{i}", n) for i, n in enumerate(reversed(shape), start=1)]
    cards += [_card("PCOUNT", 0), _card("GCOUNT", 1), _card("EXTNAME", extname)]
    if bunit:
        cards.append(_card("BUNIT", bunit))
    text = "".join(cards) + f"{'END':80s}"
    text += " " * (-len(text) % 2880)
    return text.encode("ascii")


class SpectraFileWriter:
    """Write a spectra or coadd file HDU by HDU (memory: one HDU at a time).

    PRIMARY, FIBERMAP and EXP_FIBERMAP are written by :meth:`open`; a band's WAVELENGTH, FLUX,
    IVAR, MASK and RESOLUTION HDUs by :meth:`write_band` or one by one with :meth:`write_image`
    (the array's bytes are appended as they are, big-endian, without a copy when the array
    already has the FITS byte order); :meth:`add_table` appends SCORES.  The file is written
    under a temporary name and renamed into place by :meth:`close` (removed on error when used
    as a context manager).

    Parameters
    ----------
    path : str
    units : str, optional
        BUNIT of the fluxes (cframe units by default).
    """

    def __init__(self, path, units=None):
        import os
        import secrets
        self.path = os.fspath(path)
        directory, name = os.path.split(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self.tmp = os.path.join(directory, f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{name}")
        self.units = units or CFRAME_UNITS
        self.opened = False

    def open(self, header, fibermap, exp_fibermap=None, units=None):
        """Write PRIMARY (``header`` keywords), FIBERMAP and EXP_FIBERMAP; open the file for the bands.

        ``fibermap`` is an astropy Table (written by astropy, with its meta and units) or a numpy
        structured array (written by fitsio, with ``units``: column -> TUNIT).
        """
        if not hasattr(fibermap, "colnames") and exp_fibermap is None and all(len(k) <= 8 for k in header):
            self._open_fitsio(header, fibermap, units or {})
        else:
            from astropy.io import fits

            from .fibermap import build_header, table_to_hdu
            hdus = [fits.PrimaryHDU(header=build_header(header)), table_to_hdu(fibermap, "FIBERMAP")]
            if exp_fibermap is not None:
                hdus.append(table_to_hdu(exp_fibermap, "EXP_FIBERMAP"))
            fits.HDUList(hdus).writeto(self.tmp)
        self.opened = True
        return self

    def _open_fitsio(self, header, fibermap, units):
        """PRIMARY and FIBERMAP by fitsio (keywords of at most 8 characters, scalar values)."""
        import fitsio
        cards = [{"name": k.upper(), "value": v.item() if isinstance(v, np.generic) else v}
                 for k, v in header.items() if v is not None]
        names = fibermap.dtype.names
        with fitsio.FITS(self.tmp, "rw", clobber=True) as f:
            f.write(None, header=cards)
            f.write(fibermap, extname="FIBERMAP", units=[units.get(c, "") for c in names])

    def write_band(self, band, wave, flux, ivar, mask, resolution):
        """Write the five HDUs of ``band`` (wave float64, flux/ivar/resolution float32, mask int32)."""
        B = band.upper()
        self.write_image(f"{B}_WAVELENGTH", np.asarray(wave, dtype=">f8"), "Angstrom")
        self.write_image(f"{B}_FLUX", flux, self.units, DISK_DTYPES["flux"])
        self.write_image(f"{B}_IVAR", ivar, ivar_units(self.units), DISK_DTYPES["ivar"])
        self.write_image(f"{B}_MASK", mask, None, DISK_DTYPES["mask"])
        self.write_image(f"{B}_RESOLUTION", resolution, None, DISK_DTYPES["resolution"])

    def write_image(self, extname, data, bunit=None, dtype=None):
        """Append one image HDU (``dtype``: on-disk type, default ``data``'s; float32 by default for floats)."""
        data = np.asarray(data)
        if dtype is None:
            dtype = data.dtype if data.dtype.kind in "iu" or data.dtype.itemsize == 8 else np.float32
        dtype = np.dtype(dtype).newbyteorder(">") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
        data = np.ascontiguousarray(data, dtype=dtype)
        with open(self.tmp, "ab") as fh:
            fh.write(image_hdu_bytes(extname, data.shape, dtype, bunit))
            fh.write(data.reshape(-1).view(np.uint8).data if data.size else b"")
            fh.write(b"\0" * (-data.nbytes % 2880))

    def write_image_parts(self, extname, shape, dtype, bunit, parts):
        """Append one image HDU of ``shape`` and big-endian ``dtype`` from consecutive parts.

        Each part is an array (its bytes, converted to ``dtype``) or a ``(path, offset, nbytes)``
        byte range of another file, copied by the kernel (``os.copy_file_range``; read and write
        where that is unavailable).  The parts must add up to the HDU's size.
        """
        import os
        dtype = np.dtype(dtype)
        expected = int(np.prod(shape)) * dtype.itemsize
        written = 0
        sources = {}
        try:
            with open(self.tmp, "r+b", buffering=0) as fh:
                fh.seek(0, os.SEEK_END)
                fh.write(image_hdu_bytes(extname, shape, dtype, bunit))
                for part in parts:
                    if isinstance(part, tuple):
                        path, offset, nbytes = part
                        if path not in sources:
                            sources[path] = os.open(path, os.O_RDONLY)
                        _copy_range(sources[path], fh, offset, nbytes, path)
                        written += nbytes
                    else:
                        data = np.ascontiguousarray(part, dtype=dtype)
                        fh.write(data.reshape(-1).view(np.uint8).data if data.size else b"")
                        written += data.nbytes
                if written != expected:
                    raise ValueError(f"{extname}: {written} bytes written for shape {shape} ({expected} bytes)")
                fh.write(b"\0" * (-written % 2880))
        finally:
            for fd in sources.values():
                os.close(fd)

    def add_table(self, table, extname):
        """Append a numeric table HDU (SCORES)."""
        import fitsio
        arr = np.asarray(table.as_array() if hasattr(table, "as_array") else table)
        with fitsio.FITS(self.tmp, "rw") as f:
            f.write(arr, extname=extname)

    def close(self):
        """Rename the file into place."""
        import os
        self.opened = False
        os.replace(self.tmp, self.path)

    def abort(self):
        """Remove the temporary file."""
        import os
        self.opened = False
        if os.path.exists(self.tmp):
            os.remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        elif self.opened:
            self.close()
        return False


def write_coadd(path, header, coadd):
    """Write a coadd file from :func:`desired.coadd.coadd_arrays` output (atomic).

    Parameters
    ----------
    path : str
    header : dict
        HDU0 keywords.
    coadd : dict
        ``bands``, ``wave``/``flux``/``ivar``/``mask``/``resolution_data`` (dicts per band),
        ``fibermap``, ``exp_fibermap``, ``scores``.
    """
    with SpectraFileWriter(path) as writer:
        writer.open(header, coadd["fibermap"], coadd["exp_fibermap"])
        for b in coadd["bands"]:
            writer.write_band(b, coadd["wave"][b], coadd["flux"][b], coadd["ivar"][b], coadd["mask"][b],
                              coadd["resolution_data"][b])
        writer.add_table(coadd["scores"], "SCORES")


def read_spectra_meta(path):
    """Read the header, tables and band list of a spectra/coadd file without its images.

    Returns
    -------
    dict
        ``header`` (dict), ``bands`` (lower case, file order), ``wave`` (dict band -> array),
        ``fibermap``, ``exp_fibermap``, ``scores`` (Tables or None).
    """
    import fitsio
    try:
        with fitsio.FITS(path) as f:
            names = [hdu.get_extname().upper() for hdu in f]
            hdr = f[0].read_header()
            header = {k: hdr[k] for k in hdr.keys() if k not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", "COMMENT",
                                                                  "HISTORY", "")}
            bands = [n[:-len("_WAVELENGTH")].lower() for n in names if n.endswith("_WAVELENGTH")]
            wave = {b: np.asarray(f[f"{b.upper()}_WAVELENGTH"].read(), dtype=np.float64) for b in bands}
            tables = {}
            for name in ("FIBERMAP", "EXP_FIBERMAP", "SCORES"):
                tables[name] = _fitsio_table(f[name].read(), f[name].read_header()) if name in names else None
    except (OSError, ValueError) as err:
        raise DataModelError(path, f"unreadable spectra file ({type(err).__name__}: {err})") from None
    if not bands:
        raise DataModelError(path, "no {BAND}_WAVELENGTH HDU")
    if tables["FIBERMAP"] is None:
        raise DataModelError(path, "missing HDU FIBERMAP")
    return {"header": header, "bands": bands, "wave": wave, "fibermap": tables["FIBERMAP"],
            "exp_fibermap": tables["EXP_FIBERMAP"], "scores": tables["SCORES"]}


def read_spectra_band(path, band):
    """Read one band's FLUX, IVAR (float32), MASK (int32, zeros if absent) and RESOLUTION (float32).

    Returns
    -------
    tuple
        ``(flux, ivar, mask, resolution)``.
    """
    import fitsio
    B = band.upper()
    try:
        with fitsio.FITS(path) as f:
            names = {hdu.get_extname().upper() for hdu in f}
            for kind in ("FLUX", "IVAR", "RESOLUTION"):
                if f"{B}_{kind}" not in names:
                    raise DataModelError(path, f"missing HDU {B}_{kind}")
            def read(kind, dtype):
                data = _read_raw_image(path, f[f"{B}_{kind}"], dtype)     # bytes + in-place swap: fastest
                return np.asarray(f[f"{B}_{kind}"].read(), dtype=dtype) if data is None else data
            flux = read("FLUX", np.float32)
            ivar = read("IVAR", np.float32)
            mask = read("MASK", np.int32) if f"{B}_MASK" in names else np.zeros(flux.shape, np.int32)
            res = read("RESOLUTION", np.float32)
    except DataModelError:
        raise
    except (OSError, ValueError) as err:
        raise DataModelError(path, f"cannot read band {band} ({type(err).__name__}: {err})") from None
    if ivar.shape != flux.shape or mask.shape != flux.shape or res.shape[0] != flux.shape[0] \
            or res.shape[2] != flux.shape[1]:
        raise DataModelError(path, f"band {band}: inconsistent shapes FLUX {flux.shape}, IVAR {ivar.shape}, "
                                   f"MASK {mask.shape}, RESOLUTION {res.shape}")
    return flux, ivar, mask, res


def find_exposure_fibermap(raw_fibermap, production_fibermap):
    """The file holding an exposure's TARGET_RA/DEC, or None.

    The raw fibermap, else a ``fiberassign-*.fits[.gz]`` in the raw exposure directory, else the
    production fibermap, whichever exists first.

    Parameters
    ----------
    raw_fibermap, production_fibermap : str
        Paths of the exposure's raw and production fibermap files.
    """
    if os.path.exists(raw_fibermap):
        return raw_fibermap
    expdir = os.path.dirname(raw_fibermap)
    if os.path.isdir(expdir):
        for name in sorted(os.listdir(expdir)):
            if name.startswith("fiberassign-") and name.endswith((".fits", ".fits.gz")):
                return os.path.join(expdir, name)
    return production_fibermap if os.path.exists(production_fibermap) else None


def read_fibermap_coordinates(path):
    """Read TARGETID, FIBER, TARGET_RA, TARGET_DEC of a fibermap (or fiberassign) file and its keywords.

    Parameters
    ----------
    path : str
        A ``fibermap-{expid}.fits`` (FIBERMAP HDU) or ``fiberassign-{tile}.fits[.gz]`` (FIBERASSIGN HDU).

    Returns
    -------
    table : numpy structured array
        The four columns.
    header : dict
        HDU0 keywords completed by the table HDU's (SURVEY, FAPRGRM, TILEID...).

    Raises
    ------
    DataModelError
        Unreadable file, no FIBERMAP/FIBERASSIGN HDU, or a missing column.
    """
    import fitsio
    try:
        with fitsio.FITS(path) as f:
            names = [hdu.get_extname().upper() for hdu in f]
            ext = "FIBERMAP" if "FIBERMAP" in names else "FIBERASSIGN" if "FIBERASSIGN" in names else None
            if ext is None:
                raise DataModelError(path, "no FIBERMAP or FIBERASSIGN HDU")
            cols = f[ext].get_colnames()
            missing = [c for c in ("TARGETID", "FIBER", "TARGET_RA", "TARGET_DEC") if c not in cols]
            if missing:
                raise DataModelError(path, f"{ext} lacks column(s) {', '.join(missing)}")
            table = f[ext].read(columns=["TARGETID", "FIBER", "TARGET_RA", "TARGET_DEC"])
            header = {}
            for hdr in (f[0].read_header(), f[ext].read_header()):
                for k in hdr.keys():
                    if k not in header and k not in ("COMMENT", "HISTORY", ""):
                        header[k] = hdr[k]
    except DataModelError:
        raise
    except (OSError, ValueError) as err:
        raise DataModelError(path, f"unreadable fibermap ({type(err).__name__}: {err})") from None
    return table, header


def write_healpix_list(path, pixels):
    """Write the healpix list of a (survey, program): one pixel number per line, sorted (atomic)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            for p in sorted({int(p) for p in pixels}):
                fh.write(f"{p}\n")


def read_healpix_list(path):
    """Read a healpix list file -> sorted list of int."""
    with open(path) as fh:
        return sorted(int(line) for line in fh if line.strip())
