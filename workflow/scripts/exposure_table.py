"""Snakemake adapter of checkpoint exposure_table: scan one night's raw headers."""
from desired.scripts.exposure_table import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(raw_dir=snakemake.params.raw, night=int(snakemake.wildcards.night), outfile=snakemake.output.table,
        override=snakemake.params.override)
