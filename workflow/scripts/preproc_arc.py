"""Snakemake adapter of rule preproc_arc: arc preproc that records ok/failed instead of failing.

The preproc image is a by-product (params.image); the declared output is the
sidecar, so one bad arc leaves the night's psfnight free to combine the others.
"""
import os

from desired.scripts.preproc import run
from desired.workflow_status import run_absorbing_failure, step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    if os.path.exists(snakemake.params.image):
        os.remove(snakemake.params.image)  # a stale image must not pass for this run's
    run_absorbing_failure(snakemake.output.status, run, infile=snakemake.input.raw,
                          camera=snakemake.wildcards.camera, calib=snakemake.input.calib,
                          outfile=snakemake.params.image, reject_cosmics=snakemake.params.cosmics)
