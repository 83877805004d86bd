"""Snakemake adapter of rule stdstars: fit the standard stars of one spectrograph and exposure."""
from desired.scripts.stdstars import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    opt = snakemake.params.options
    run(list(snakemake.input.frames), snakemake.output.stdstars, fiberflats=list(snakemake.input.fiberflats),
        skys=list(snakemake.input.skys), teff=tuple(opt["teff"]), logg=tuple(opt["logg"]), feh=tuple(opt["feh"]),
        delta_color=opt["delta_color"], color_sys=opt["color_sys"], color_correct=opt["color_correct"])
