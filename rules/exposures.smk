# Stage 1: discover the exposures of a night (checkpoint) and copy their fibermaps.


checkpoint exposure_table:
    """Scan the night's raw headers into the exposure table (NIGHT, EXPID, OBSTYPE, ...)."""
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
