"""Snakemake adapter of rule fiberflat: one flat camera's frame -> fiberflat."""
from desired.scripts.fiberflat import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(infile=snakemake.input.frame, outfile=snakemake.output.fiberflat, nsig=snakemake.params.nsig,
        smoothing_res=snakemake.params.smoothing_res)
