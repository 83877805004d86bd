"""Snakemake adapter of rule fiberflatnight: the night's fiberflats of one camera -> fiberflatnight."""
from desired.scripts.fiberflatnight import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    if not list(snakemake.input):
        raise RuntimeError(f"fiberflatnight {snakemake.wildcards.night} {snakemake.wildcards.camera}: "
                           "no flat exposure this night")
    run(infiles=list(snakemake.input), outfile=snakemake.output.fiberflat, nsig=snakemake.params.nsig)
