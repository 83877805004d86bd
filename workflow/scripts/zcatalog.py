"""Snakemake adapter of rule zcatalog: a survey/program's redshift files -> zpix catalog."""
from desired.scripts.zcatalog import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(infiles=list(snakemake.input), outfile=snakemake.output.zcatalog,
        survey=snakemake.wildcards.survey, program=snakemake.wildcards.program)
