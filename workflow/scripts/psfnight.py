"""Snakemake adapter of rule psfnight: combine the night's successful arc PSFs of one camera.

The rule's input is the arc PSFs whose fit succeeded, or the configured fallback
PSF alone when none did (then it is copied); with neither the job fails with a
message saying so.
"""
from desired.scripts.psfnight import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    fallback = snakemake.params.fallback
    arcs = [path for path in snakemake.input if path != fallback]
    if not arcs and not fallback:
        raise RuntimeError(f"psfnight {snakemake.wildcards.night} {snakemake.wildcards.camera}: no arc PSF "
                           "succeeded this night and psfnight.fallback_psf is not configured")
    run(infiles=arcs, outfile=snakemake.output.psf, fallback=fallback)
