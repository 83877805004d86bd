"""Snakemake adapter of rule fluxcalib: flux calibration of one science camera."""
from desired.scripts.fluxcalib import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    opt = snakemake.params.options
    run(snakemake.input.frame, snakemake.input.models, snakemake.output.fluxcalib,
        fiberflat=snakemake.input.fiberflat, sky=snakemake.input.sky, nominal=snakemake.params.nominal or None,
        min_std=opt["min_std"], knot_spacing=opt["knot_spacing"], penalty=opt["penalty"],
        max_scale_dev=opt["max_scale_dev"], max_shape_rms=opt["max_shape_rms"],
        telluric_spacing=opt["telluric_spacing"])
