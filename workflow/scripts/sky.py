"""Snakemake adapter of rule sky: science frame + fiberflatnight -> sky model."""
from desired.scripts.sky import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(infile=snakemake.input.frame, fiberflat=snakemake.input.fiberflat, outfile=snakemake.output.sky,
        nsig=snakemake.params.nsig, add_variance=snakemake.params.extra_variance,
        adjust_wavelength=snakemake.params.adjust_wavelength, adjust_lsf=snakemake.params.adjust_lsf)
