"""Snakemake adapter of rule preproc: one flat/science camera -> preproc image."""
from desired.scripts.preproc import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    fibermap = list(snakemake.input.fibermap)
    run(infile=snakemake.input.raw, camera=snakemake.wildcards.camera, calib=snakemake.input.calib,
        outfile=snakemake.output.image, fibermap=fibermap[0] if fibermap else None,
        reject_cosmics=snakemake.params.cosmics)
