# Stage 6: standard stars, flux calibration, cframes (issue 12 items 3-4).
# Inputs from the calib stage (rules/calib.smk): fiberflatnight per camera and
# night, sky per science camera.  stdstars fits the b, r, z frames of one
# spectrograph jointly; fluxcalib and cframe are per camera.  Helpers live in
# rules/common_fluxcalib.smk.

rule stdstars:
    """Fit the standard stars of one spectrograph and science exposure (b, r, z jointly)."""
    input:
        unpack(stdstars_inputs),
    output:
        stdstars=pattern("stdstars"),
    params:
        options=config["stdstars"],
    log:
        log_pattern("stdstars", "night", "spectrograph", "expid"),
    benchmark:
        benchmark_pattern("stdstars", "night", "spectrograph", "expid")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/stdstars.py"


rule fluxcalib:
    """Flux calibration of one science camera from its spectrograph's standards (flagged nominal fallback)."""
    input:
        frame=pattern("frame"),
        fiberflat=lambda w: path("fiberflatnight", night=w.night, camera=w.camera),
        sky=pattern("sky"),
        models=stdstars_for_camera,
    output:
        fluxcalib=pattern("fluxcalib"),
    params:
        nominal=nominal_fluxcalib,
        options=config["fluxcalib"],
    log:
        log_pattern("fluxcalib", "night", "camera", "expid"),
    benchmark:
        benchmark_pattern("fluxcalib", "night", "camera", "expid")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/fluxcalib.py"


rule cframe:
    """Calibrated frame: (frame / fiberflat - sky) / flux calibration."""
    input:
        frame=pattern("frame"),
        fiberflat=lambda w: path("fiberflatnight", night=w.night, camera=w.camera),
        sky=pattern("sky"),
        calib=pattern("fluxcalib"),
    output:
        cframe=pattern("cframe"),
    log:
        log_pattern("cframe", "night", "camera", "expid"),
    benchmark:
        benchmark_pattern("cframe", "night", "camera", "expid")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/cframe.py"
