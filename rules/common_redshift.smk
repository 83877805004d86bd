# Helpers of the redshift stage (rules/redshift.smk).
#
# The list of healpix groups comes from the coadd stage: healpix_groups() -> sorted
# [(survey, program, healpix)] (rules/common_spectra.smk, included before this file);
# DESIRED (the interpreter-started CLI) from rules/common.smk.
import os


def redshift_templates():
    """Redrock template directory: `templates.redrock_dir`, else DESI's public templates beside the
    checkout (../shared/data/redrock-templates, as the developers' and CI's trees have them), else None.

    The project does not build its own template set yet, so with neither the redshift stage is
    left out of `rule all` (a warning says how to enable it) and the run ends at the coadds.
    """
    configured = config["templates"]["redrock_dir"]
    if configured:
        return configured
    beside = os.path.join(workflow.basedir, "..", "shared", "data", "redrock-templates")
    return os.path.normpath(beside) if os.path.isdir(beside) else None


REDSHIFT_TEMPLATES = redshift_templates()
if REDSHIFT_TEMPLATES is None:
    logger.warning("redshift stage skipped: no redrock templates (set templates.redrock_dir in the config "
                   "to a directory of rrtemplate-*.fits files, e.g. DESI's redrock-templates release)")


def redshift_options():
    """Command-line options of `desired redshifts` from config['redshifts'] and the template directory."""
    opts = []
    if REDSHIFT_TEMPLATES:
        opts.append(f"--templates {REDSHIFT_TEMPLATES}")
    rs = config["redshifts"]
    opts.append(f"--nproc {rs['nproc']}")
    if rs["model"]:
        opts.append("--model {output.model}")
    if rs["batch_size"]:
        opts.append(f"--batch-size {rs['batch_size']}")
    return " ".join(opts)


def redrock_path(survey, program, healpix):
    """Redshift file of one healpix group."""
    return path("redrock", survey=survey, program=program, pixgroup=str(int(healpix) // 100), healpix=str(healpix))


def zcatalog_inputs(wildcards):
    """Every healpix redshift file of one survey/program."""
    return [redrock_path(s, p, h) for s, p, h in healpix_groups()
            if s == wildcards.survey and p == wildcards.program]


def redshift_outputs():
    """Outputs of the redshifts rule: the redrock file, plus the rrmodel file when configured."""
    out = {"redrock": pattern("redrock")}
    if config["redshifts"]["model"]:
        out["model"] = pattern("rrmodel")
    return out


@register_targets
def zcatalog_targets(night):
    """One catalog per survey/program of the production (the same for every night)."""
    if REDSHIFT_TEMPLATES is None:
        return []
    pairs = sorted({(s, p) for s, p, _ in healpix_groups()})
    return [path("zcatalog", survey=s, program=p) for s, p in pairs]
