"""Snakemake adapter of rule fibermap: raw fibermap -> production fibermap."""
from desired.scripts.fibermap import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(infile=snakemake.input.fibermap, raw=snakemake.input.raw, outfile=snakemake.output.fibermap)
