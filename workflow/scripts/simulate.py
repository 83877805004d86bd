"""Snakemake adapter of rule simulate: one night into the raw/calib/truth trees."""
from desired.scripts.simulate import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    options = dict(snakemake.params.opts)
    options["night"] = int(snakemake.wildcards.night)
    run(raw_dir=snakemake.params.raw, calib_dir=snakemake.params.calib, truth_dir=snakemake.params.truth,
        **options)
