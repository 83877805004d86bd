# Job grouping under SLURM (config `group`): a camera's chain of short steps runs
# as ONE cluster job (a Snakemake group) instead of one job per step, and
# `group.per_job` chains are packed into one job (Snakemake's group components).
# Groups take effect only with a cluster executor (profiles/slurm); local runs
# and results are unchanged.
#
#   group.chain: none     every step its own SLURM job (default)
#                extract  traceshift + extract of a flat/science camera    (group "camera_chain")
#                all      preproc + traceshift + extract of a flat/science camera (group "camera_chain"),
#                         and preproc_arc + psf of an arc camera             (group "arc_chain")
#   group.per_job: N      N such chains (cameras or exposures) in one SLURM job, run one
#                         after the other inside it
#
# With `all` a flat/science preproc waits for the night's psfnight (it runs in the
# same job as its traceshift); `extract` keeps preproc free to run alongside the
# arc PSF fits.
#
# Known limit of per_job (Snakemake 9.27, measured on the mini night): the arc
# chains came 3 per job as asked, but the 6 flat/science chains, built after the
# psf checkpoints updated the DAG, all landed in ONE job (groups already packed
# are packed again at each DAG update), which then ran them one after another.

#: rules in each group for each value of group.chain
CHAIN_GROUPS = {
    "none": {},
    "extract": {"traceshift": "camera_chain", "extract": "camera_chain"},
    "all": {"preproc": "camera_chain", "traceshift": "camera_chain", "extract": "camera_chain",
            "preproc_arc": "arc_chain", "psf": "arc_chain"},
}


def step_group(rule):
    """Snakemake group of `rule` under config group.chain (None: its own job).

    A callable when group.per_job > 1: Snakemake evaluates it while it builds the
    DAG, after the command line's group settings are in place (they replace any set
    while this file is parsed), and it then packs group.per_job chains per job.
    """
    group = CHAIN_GROUPS[config["group"]["chain"]].get(rule)
    if group is None or config["group"]["per_job"] <= 1:
        return group

    def packed_group(wildcards):
        _pack_group_components()
        return group

    return packed_group


def _pack_group_components():
    """Pack group.per_job chains into one job (as --group-components GROUP=N would);
    an explicit --group-components on the command line wins.

    Snakemake sizes a group job by summing the resources of the jobs that may run
    at once (cpus_per_task, tasks, nodes, mem_mb): N chains side by side would ask
    for N x N CPUs (N x cpus_per_task per task, N x tasks) and N nodes.  A limit of
    one cpus_per_task per group job, in the "local" scope (it bounds what runs at
    once inside a job, not how many jobs the cluster runs), makes the chains of a
    job run one after the other, so the job asks for what its largest step needs.
    """
    settings = workflow.group_settings
    wanted = set(CHAIN_GROUPS[config["group"]["chain"]].values())
    if settings is None or wanted <= set(settings.group_components):
        return
    components = dict(settings.group_components)
    for group in wanted:
        components.setdefault(group, config["group"]["per_job"])
    settings.group_components = components


if config["group"]["per_job"] > 1 and config["group"]["chain"] != "none":
    workflow.register_resource("cpus_per_task", 1)


resource_scopes:
    cpus_per_task="local",
