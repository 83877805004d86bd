# Helpers of the redshift stage (rules/redshift.smk).
#
# The list of healpix groups comes from the coadd stage: healpix_groups() -> sorted
# [(survey, program, healpix)] (rules/common_spectra.smk, included before this file);
# DESIRED (the interpreter-started CLI) from rules/common.smk.
import os


def redshift_templates():
    """Redrock templates of the redshift stage (a directory or a templates-default.txt list).

    `templates.redrock_dir` when set; else with `templates.source: auto` DESI's public
    templates beside the checkout (../shared/data/redrock-templates, as the developers'
    and CI's trees have them) when present; else the project's own set, which rule
    `templates` builds into the calib tree (`desired templates`), so that a fresh
    machine needs nothing else.
    """
    tconf = config["templates"]
    if tconf["redrock_dir"]:
        return tconf["redrock_dir"]
    beside = os.path.join(workflow.basedir, "..", "shared", "data", "redrock-templates")
    if tconf.get("source", "auto") == "auto" and os.path.isdir(beside):
        return os.path.normpath(beside)
    return BUILT_TEMPLATES


#: templates-default.txt of the project's own template set (output of rule templates)
BUILT_TEMPLATES = path("calib_templates")
REDSHIFT_TEMPLATES = redshift_templates()


def redshift_template_inputs(wildcards):
    """The built template list when the redshift stage uses the project's own templates, else nothing."""
    return [BUILT_TEMPLATES] if REDSHIFT_TEMPLATES == BUILT_TEMPLATES else []


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
    pairs = sorted({(s, p) for s, p, _ in healpix_groups()})
    return [path("zcatalog", survey=s, program=p) for s, p in pairs]
