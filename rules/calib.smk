# Stage 5: calibration.  fiberflat per flat camera, fiberflatnight per (night, camera)
# over the night's flats, sky per science camera (frame divided by fiberflatnight).


rule fiberflat:
    """Fiber flat of one flat-exposure camera from its frame."""
    input:
        frame=pattern("frame"),
    output:
        fiberflat=pattern("fiberflat"),
    params:
        nsig=config["fiberflat"]["nsig"],
        smoothing_res=config["fiberflat"]["smoothing_res"],
    log:
        log_pattern("fiberflat", "night", "camera", "expid"),
    benchmark:
        benchmark_pattern("fiberflat", "night", "camera", "expid")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/fiberflat.py"


rule fiberflatnight:
    """Robust combination of the night's fiber flats of one camera."""
    input:
        fiberflatnight_inputs,
    output:
        fiberflat=pattern("fiberflatnight"),
    params:
        nsig=config["fiberflatnight"]["nsig"],
    log:
        log_pattern("fiberflatnight", "night", "camera"),
    benchmark:
        benchmark_pattern("fiberflatnight", "night", "camera")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/fiberflatnight.py"


rule sky:
    """Sky model of one science camera (frame divided by the night's fiber flat)."""
    input:
        frame=pattern("frame"),
        fiberflat=pattern("fiberflatnight"),
    output:
        sky=pattern("sky"),
    params:
        nsig=config["sky"]["nsig"],
        extra_variance=config["sky"]["extra_variance"],
        adjust_wavelength=config["sky"]["adjust_wavelength"],
        adjust_lsf=config["sky"]["adjust_lsf"],
    log:
        log_pattern("sky", "night", "camera", "expid"),
    benchmark:
        benchmark_pattern("sky", "night", "camera", "expid")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/sky.py"
