"""Snakemake adapter of rule psfnight: combine the night's successful arc PSFs of one camera.

The rule's input is the ok/failed sidecar of every arc PSF fit of the night and
camera; the PSFs whose sidecar says ok are combined, the others are recorded in
the output as dropped with their reason (as are arcs marked bad in the exposure
table).  With no arc left the configured fallback PSF is copied, or the job
fails with a message saying so.
"""
from desired.scripts.psfnight import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    run(infiles=[], sidecars=list(snakemake.input.status), outfile=snakemake.output.psf,
        fallback=snakemake.params.fallback, dropped=snakemake.params.dropped)
