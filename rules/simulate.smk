# Stage 0: simulate a raw night (only when config raw_dir is null).


rule simulate:
    """Simulate one night's raw exposures, calibration files and truth."""
    output:
        done=touch(os.path.join(SIM_DIR, "simulate-{night}.done")),
    params:
        raw=ROOTS["raw"],
        calib=ROOTS["calib"],
        truth=ROOTS["truth"],
        opts=config["simulate"],
    log:
        log_pattern("simulate", "night"),
    benchmark:
        benchmark_pattern("simulate", "night")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/simulate.py"
