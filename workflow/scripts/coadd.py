"""Snakemake adapter of the coadd rules: coadd every target of one spectra file."""
from desired.scripts.coadd import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(snakemake.input.spectra, snakemake.output.coadd, cosmics_nsig=snakemake.params.nsig,
        cameras=snakemake.params.cameras)
