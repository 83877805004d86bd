# Helpers of rules/spectra.smk (healpix and tile groups of the production; used by later stages too).
import functools

from desired.grouping import exposure_healpix_groups, healpix_members, tile_groups
from desired.io.spectra import find_exposure_fibermap, read_fibermap_coordinates

wildcard_constraints:
    survey=r"[a-z0-9]+",
    program=r"[a-z0-9]+",
    pixgroup=r"\d+",
    healpix=r"\d+",
    tileid=r"\d+",
    spectrograph=r"\d",


SPECTRA = config["spectra"]
TILE_GROUPINGS = [g for g in SPECTRA["groupings"] if g != "healpix"]


def exposure_fibermap_file(night, expid):
    """The file holding an exposure's TARGET_RA/DEC: raw fibermap, else the raw fiberassign, else the production fibermap."""
    return find_exposure_fibermap(path("raw_fibermap", night=night, expid=expid), path("fibermap", night=night, expid=expid))


@functools.lru_cache(maxsize=None)
def _exposure_groups(night, expid):
    """{(survey, program, healpix): spectrographs} of one exposure, from its fibermap (cached)."""
    fmfile = exposure_fibermap_file(night, expid)
    if fmfile is None:
        logger.warning(f"spectra: no fibermap for exposure {night}/{expid:08d}; it is left out of the healpix groups")
        return {}
    table, header = read_fibermap_coordinates(fmfile)
    return exposure_healpix_groups(table["TARGET_RA"], table["TARGET_DEC"], table["FIBER"], header,
                                   nside=config["healpix"]["nside"], nest=config["healpix"]["nest"],
                                   default_survey=SPECTRA["default_survey"],
                                   default_program=SPECTRA["default_program"])


def science_exposures():
    """(night, expid, tileid, cameras) of every science exposure of every configured night."""
    out = []
    for night in NIGHTS:
        for row in exposures(night, ["SCIENCE"]):
            out.append((int(night), int(row["EXPID"]), int(row["TILEID"]), tuple(row["CAMERAS"])))
    return out


@functools.lru_cache(maxsize=None)
def healpix_index():
    """{(survey, program, healpix): sorted [(night, expid, camera)]} of the cframes feeding each pixel."""
    # cached: computed once the exposures are known (an unfinished exposure scan raises instead)
    return healpix_members((night, expid, cameras, _exposure_groups(night, expid))
                           for night, expid, tileid, cameras in science_exposures())


def healpix_groups():
    """Sorted (survey, program, healpix) of every healpix spectra/coadd file of the production."""
    if "healpix" not in SPECTRA["groupings"]:
        return []
    return list(healpix_index())


@functools.lru_cache(maxsize=None)
def tile_index():
    """{(kind, tileid, spectrograph, value): sorted [(night, expid, camera)]} of the configured tile groupings."""
    exps = science_exposures()
    cams = {(n, e): c for n, e, _, c in exps}
    groups = tile_groups([(n, e, t, sorted({int(c[1:]) for c in c_})) for n, e, t, c_ in exps], TILE_GROUPINGS)
    return {g: [(n, e, c) for n, e in members for c in cams[n, e] if int(c[1:]) == g[2]]
            for g, members in groups.items()}


def tile_spectra_groups():
    """Sorted (kind, tileid, spectrograph, value) of every tile spectra/coadd file of the production."""
    return list(tile_index()) if TILE_GROUPINGS else []


def spectra_group_path(product, group):
    """Path of product 'spectra', 'coadd' or 'redrock' of a healpix group (survey, program, healpix)
    or a tile group (kind, tileid, spectrograph, value)."""
    if len(group) == 3:
        survey, program, pix = group
        return path(product, survey=survey, program=program, healpix=pix)
    kind, tileid, spectro, value = group
    key = "expid" if kind == "perexp" else "night"
    return path(f"tile_{product}_{kind}", tileid=tileid, spectrograph=spectro, **{key: value})


def _cframes(members):
    return [path("cframe", night=n, expid=e, camera=c) for n, e, c in members]


def spectra_healpix_inputs(wildcards):
    """The cframes of the exposures/spectrographs with targets in this pixel."""
    group = (wildcards.survey, wildcards.program, int(wildcards.healpix))
    if int(wildcards.pixgroup) != int(wildcards.healpix) // 100:
        raise ValueError(f"healpix {wildcards.healpix} is not in group directory {wildcards.pixgroup}")
    return _cframes(healpix_index().get(group, []))


def spectra_tile_inputs(kind):
    """Input function of one tile grouping's spectra rule."""
    def inputs(wildcards):
        value = wildcards.expid if kind == "perexp" else wildcards.night
        return _cframes(tile_index().get((kind, int(wildcards.tileid), int(wildcards.spectrograph), int(value)), []))
    return inputs


def cframes_buildable(cframes):
    """True when a workflow step produces cframes, or (a tree without that stage) they all exist already."""
    from snakemake.io import strip_wildcard_constraints   # outputs carry the global constraints
    target = os.path.normpath(pattern("cframe"))
    if any(os.path.normpath(strip_wildcard_constraints(str(out))) == target
           for step in workflow.rules for out in step.output):
        return True
    return all(os.path.exists(c) for c in cframes)


@register_targets
def spectra_targets(night):
    """Spectra and coadd of every group; healpix groups span nights, so they are listed once (first night)."""
    if int(night) != NIGHTS[0]:
        return []
    out = []
    index = dict(healpix_index()) if "healpix" in SPECTRA["groupings"] else {}
    index.update(tile_index() if TILE_GROUPINGS else {})
    groups = [g for g, members in index.items() if cframes_buildable(_cframes(members))]
    if len(groups) < len(index):
        logger.warning(f"spectra: {len(index) - len(groups)} group(s) left out: no step makes cframes and "
                       "some of their cframes do not exist")
    for group in groups:
        out += [spectra_group_path("spectra", group), spectra_group_path("coadd", group)]
    surveys = sorted({g[:2] for g in groups if len(g) == 3})
    out += [path("healpix_list", survey=s, program=p) for s, p in surveys]
    return out


def tile_group_param(kind):
    """params.group function of one tile grouping's spectra rule."""
    value = "expid" if kind == "perexp" else "night"
    def group(wildcards):
        return {"kind": kind, "tileid": int(wildcards.tileid), "spectrograph": int(wildcards.spectrograph),
                "value": int(getattr(wildcards, value))}
    return group
