# Job grouping under SLURM (config `group.chain`): a camera's chain of short steps
# runs as ONE cluster job (a Snakemake group) instead of one job per step.
# Groups take effect only with a cluster executor (profiles/slurm); local runs
# and results are unchanged.
#
#   group.chain: none     every step its own SLURM job (default)
#                extract  traceshift + extract of a flat/science camera    (group "camera_chain")
#                all      preproc + traceshift + extract of a flat/science camera (group "camera_chain"),
#                         and preproc_arc + psf of an arc camera             (group "arc_chain")
#
# With `all` a flat/science preproc waits for the night's psfnight (it runs in the
# same job as its traceshift); `extract` keeps preproc free to run alongside the
# arc PSF fits.
#
# Several chains per job (Snakemake's --group-components camera_chain=N) is NOT
# offered: tried on the mini night (Snakemake 9.27), the arc chains came 3 per
# job as asked, but the flat/science chains, grouped again after the psf
# checkpoints updated the DAG, landed all 6 in one job that listed each chain
# three times and ran chains again after they had finished.

#: rules in each group for each value of group.chain
CHAIN_GROUPS = {
    "none": {},
    "extract": {"traceshift": "camera_chain", "extract": "camera_chain"},
    "all": {"preproc": "camera_chain", "traceshift": "camera_chain", "extract": "camera_chain",
            "preproc_arc": "arc_chain", "psf": "arc_chain"},
}


def step_group(rule):
    """Snakemake group of `rule` under config group.chain (None: its own job)."""
    return CHAIN_GROUPS[config["group"]["chain"]].get(rule)
