"""Snakemake adapter of the spectra rules: regroup cframes into one healpix or tile spectra file."""
from desired.scripts.group_spectra import run
from desired.workflow_status import step_logging

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with step_logging(snakemake.log[0]):
    survey, program = snakemake.params.defaults
    n = run(list(snakemake.input.cframes), snakemake.output.spectra, dict(snakemake.params.group),
            default_survey=survey, default_program=program)
    if n == 0:
        raise RuntimeError(f"no input spectrum belongs to {snakemake.output.spectra}")
