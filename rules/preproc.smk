# Stage 2: preproc per (night, expid, camera).  Flats and science go through the
# plain `preproc` rule; arcs through `preproc_arc`, which records ok/failed in a
# sidecar instead of failing, so that one bad arc cannot block the night's psfnight.


rule preproc:
    """Raw camera image -> preproc image (electrons, ivar, mask)."""
    input:
        raw=pattern("raw"),
        calib=pattern("calib_ccd"),
        fibermap=fibermap_input,
    output:
        image=pattern("preproc"),
    params:
        cosmics=config["preproc"]["cosmics"],
    log:
        log_pattern("preproc", "night", "camera", "expid"),
    benchmark:
        benchmark_pattern("preproc", "night", "camera", "expid")
    group:
        step_group("preproc")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/preproc.py"


rule preproc_arc:
    """Arc preproc; the image is a by-product, the declared output its ok/failed sidecar."""
    input:
        raw=pattern("raw"),
        calib=pattern("calib_ccd"),
    output:
        status=status_pattern("preproc"),
    params:
        image=pattern("preproc"),
        cosmics=config["preproc"]["cosmics"],
    log:
        log_pattern("preproc", "night", "camera", "expid"),
    benchmark:
        benchmark_pattern("preproc", "night", "camera", "expid")
    group:
        step_group("preproc_arc")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/preproc_arc.py"
