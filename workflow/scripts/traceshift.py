"""Snakemake adapter of rule traceshift: trace shifts of a flat/science camera -> shifted PSF."""
from desired.scripts.traceshift import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(image=snakemake.input.image, psf=snakemake.input.psf, outfile=snakemake.output.psf,
        sky_template=snakemake.params.sky_template)
