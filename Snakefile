# desired: the production DAG (raw exposures -> frames -> ... -> redshifts).
#
#   snakemake -n                                   # what would run
#   snakemake --profile profiles/local             # run locally
#   snakemake --profile profiles/slurm             # run on a SLURM cluster (MPI steps under srun)
#   desired status / desired rerun TASK            # progress table / targeted rerun
#
# Stages live in rules/*.smk (helpers in rules/common.smk); every path comes from
# desired.paths.PATTERNS.  Later stages add a rules file, `include:` it below and
# register their outputs with @register_targets.  Rules run thin
# workflow/scripts/<step>.py adapters (each calls desired.scripts.<step>.run);
# only the MPI steps psf and extract are shell rules, started under srun.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from desired.workflow_status import validate_config

min_version("8.20")


configfile: "config/config.yaml"


try:
    validate_config(config, workflow.source_path("config/config.schema.yaml"))
except ValueError as err:  # one line naming the key, not the whole schema
    raise WorkflowError(str(err)) from None


include: "rules/common.smk"
include: "rules/groups.smk"
include: "rules/simulate.smk"
include: "rules/exposures.smk"
include: "rules/common_fluxcalib.smk"
# The per-night half (raw -> cframe). A healpix-half run (config stages: healpix) leaves
# these rules out: its DAG starts at the cframes every night's run already made, so its
# size is that of the healpix stage alone, whatever the number of nights.
if config["stages"] != "healpix":

    include: "rules/preproc.smk"
    include: "rules/psf.smk"
    include: "rules/extract.smk"
    include: "rules/calib.smk"
    include: "rules/fluxcalib.smk"


include: "rules/common_spectra.smk"
include: "rules/spectra.smk"
include: "rules/common_redshift.smk"
include: "rules/redshift.smk"
# the QA stage: its report waits for every registered target (input functions run after all includes)
include: "rules/qa.smk"


localrules:
    all,
    exposure_table,
    check_raw,
    fibermap,
    healpix_list,
    spectra_all,


# Before any job runs, and when the run ends: remove the products that must not be
# trusted (downstream of a failed job, or of an exposure marked bad) and print
# which tasks failed, with the first line of each failure's log.
onstart:
    report_production(workflow, "start")


onsuccess:
    report_production(workflow, "end")


onerror:
    report_production(workflow, "end")
    build_report_after_failure(workflow)  # the QA report, failed jobs as alarms (rules/common.smk, qa block)


rule all:
    """Every registered target of every configured night."""
    input:
        all_targets,
    default_target: True


rule spectra_all:
    """Every spectra and coadd file of the production (and the healpix lists)."""
    input:
        lambda wildcards: sorted({p for night in NIGHTS for p in spectra_targets(night)}),


# after every rule: Snakemake then reads the input/params functions' signatures once, not per job
cache_function_signatures(workflow.rules)
