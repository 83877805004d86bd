"""Snakemake adapter of rule cframe: (frame / fiberflat - sky) / calibration."""
from desired.scripts.cframe import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(snakemake.input.frame, snakemake.input.calib, snakemake.output.cframe,
        fiberflat=snakemake.input.fiberflat, sky=snakemake.input.sky)
