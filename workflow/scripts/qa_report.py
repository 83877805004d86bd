"""Snakemake adapter of rule qa_report: the production's static HTML QA report."""
import os

from desired.scripts.qa import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(dict(snakemake.config), outdir=os.path.dirname(snakemake.output.index),
        templates=snakemake.params.templates)
