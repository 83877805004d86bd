# Helpers of rules/fluxcalib.smk (standard stars, flux calibration, cframes).

wildcard_constraints:
    spectrograph=r"\d",


def spectrograph_cameras(wildcards):
    """Cameras of spectrograph {spectrograph} in science exposure {expid} of {night} (b, r, z order)."""
    for row in exposures(wildcards.night, ["SCIENCE"]):
        if f"{row['EXPID']:08d}" == wildcards.expid:
            cams = [c for c in row["CAMERAS"] if c[1:] == wildcards.spectrograph]
            return sorted(cams, key=lambda c: "brz".index(c[0]))
    return []


def stdstars_inputs(wildcards):
    cams = spectrograph_cameras(wildcards)
    return {"frames": [path("frame", night=wildcards.night, expid=wildcards.expid, camera=c) for c in cams],
            "fiberflats": [path("fiberflatnight", night=wildcards.night, camera=c) for c in cams],
            "skys": [path("sky", night=wildcards.night, expid=wildcards.expid, camera=c) for c in cams]}


def stdstars_for_camera(wildcards):
    return path("stdstars", night=wildcards.night, expid=wildcards.expid, spectrograph=wildcards.camera[1:])


def nominal_fluxcalib(wildcards):
    """Nominal calibration of the camera: config fluxcalib.nominal (pattern with {camera}), else the calib tree's."""
    configured = config["fluxcalib"]["nominal"]
    if configured:
        return configured.format(camera=wildcards.camera)
    candidate = path("calib_fluxcalib", camera=wildcards.camera)
    return candidate if os.path.exists(candidate) else ""


@register_targets
def cframe_targets(night):
    """cframes of every science camera."""
    return [path("cframe", night=night, expid=e, camera=c) for e, c in exposure_tasks(night, ["SCIENCE"])]
