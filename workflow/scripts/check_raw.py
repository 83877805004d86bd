"""Snakemake adapter of rule check_raw: fail (with the reason in the log) when a raw exposure is unreadable."""
from desired.scripts.check_raw import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(infile=snakemake.input.raw, outfile=snakemake.output.marker)
