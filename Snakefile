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
from snakemake.utils import min_version, validate

min_version("8.20")


configfile: "config/config.yaml"


validate(config, "config/config.schema.yaml")


include: "rules/common.smk"
include: "rules/groups.smk"
include: "rules/simulate.smk"
include: "rules/exposures.smk"
include: "rules/preproc.smk"
include: "rules/psf.smk"
include: "rules/extract.smk"


localrules:
    all,
    exposure_table,
    fibermap,


rule all:
    """Every registered target of every configured night."""
    input:
        all_targets,
    default_target: True
