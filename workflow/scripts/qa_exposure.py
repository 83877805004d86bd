"""Snakemake adapter of rule qa_exposure: QA metrics of one exposure -> exposure-qa file."""
from desired.scripts.qa import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(dict(snakemake.config), night=int(snakemake.wildcards.night), expid=int(snakemake.wildcards.expid),
        metrics_only=True, outfile=snakemake.output.qa)
