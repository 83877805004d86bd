# Helpers of the redshift stage (rules/redshift.smk).
#
# The list of healpix groups comes from the coadd stage: healpix_groups() -> sorted
# [(survey, program, healpix)] (rules/common_spectra.smk).  Until that stage is
# included, no redshift target is registered.
import sys

if "DESIRED" not in globals():
    DESIRED = f"{sys.executable} -m desired"

if "healpix_groups" not in globals():

    def healpix_groups():
        """Placeholder until rules/common_spectra.smk (coadd stage) provides the production's pixels."""
        return []


def redshift_options():
    """Command-line options of `desired redshifts` from config['redshifts'] and config['templates']."""
    opts = []
    if config["templates"]["redrock_dir"]:
        opts.append(f"--templates {config['templates']['redrock_dir']}")
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
