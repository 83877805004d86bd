"""Snakemake adapter of rule healpix_list: write the pixels of one (survey, program), one per line."""
from desired.scripts.healpix_list import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(snakemake.output.listing, snakemake.params.pixels)
