"""Snakemake adapter of rule templates: the project's own redrock-format template set."""
import os

from desired.scripts.templates import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(outdir=os.path.dirname(snakemake.output.listing), seed=snakemake.params.seed,
        quick=snakemake.params.quick, nproc=snakemake.threads)
