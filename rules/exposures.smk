# Stage 1: the night's exposure table (a checkpoint only for a night simulated during
# the run: otherwise the same scan runs while the Snakefile is parsed), the check
# that fails visibly for each exposure whose raw file is unreadable, and fibermaps.


checkpoint exposure_table:
    """Scan the night's raw headers into the exposure table (unreadable files kept, marked LASTSTEP ignore)."""
    input:
        exposure_table_inputs,
    output:
        table=pattern("exposure_table"),
    params:
        raw=ROOTS["raw"],
        override=config["exposure_table"],
    log:
        os.path.join(LOGS, "exposure_table", "{month}", "exposure_table_{night}.log"),
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/exposure_table.py"


rule fibermap:
    """Copy the exposure's raw fibermap into the production tree with NIGHT/EXPID/TILEID."""
    input:
        fibermap=pattern("raw_fibermap"),
        raw=pattern("raw"),
    output:
        fibermap=pattern("fibermap"),
    log:
        log_pattern("fibermap", "night", "expid"),
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/fibermap.py"


rule check_raw:
    """Fail visibly for an exposure the scan marked bad (reads every camera; the reason goes to the log)."""
    input:
        raw=pattern("raw"),
    output:
        marker=pattern("raw_check"),
    log:
        log_pattern("check_raw", "night", "expid"),
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/check_raw.py"
