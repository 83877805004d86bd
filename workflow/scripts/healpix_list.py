"""Snakemake adapter of rule healpix_list: write the pixels of one (survey, program), one per line."""
from desired.io.spectra import write_healpix_list
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    write_healpix_list(snakemake.output.listing, snakemake.params.pixels)
