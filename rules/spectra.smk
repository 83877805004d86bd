# Stage: healpix and tile spectra (group-spectra) and their coadds, from the cframes.
#
# Which groups hold data follows from the exposures' fibermaps (TARGET_RA/TARGET_DEC
# exist in the raw tree before anything is processed), so no checkpoint is needed
# beyond the exposure discovery of common.smk: a dry run over a raw tree lists every
# pixel's spectra and coadd jobs.  Each spectra job's inputs are exactly the cframes of
# the exposures and spectrographs with targets in its group, so a new exposure or night
# reruns only the groups it touches (the other groups' inputs are unchanged).
#
# Functions for later stages (rules/redshift.smk), defined in rules/common_spectra.smk:
#   healpix_groups()            -> sorted [(survey, program, healpix)] of the production
#   tile_spectra_groups()       -> sorted [(kind, tileid, spectrograph, value)] of the configured tile groupings
#   spectra_group_path(product, group) -> path of product spectra, coadd or redrock of one such group

rule spectra_healpix:
    """Regroup the cframe rows of one (survey, program, healpix) into its spectra file."""
    input:
        cframes=spectra_healpix_inputs,
    output:
        spectra=pattern("spectra"),
    params:
        group=lambda wildcards: {"kind": "healpix", "healpix": int(wildcards.healpix),
                                 "nside": config["healpix"]["nside"], "nest": config["healpix"]["nest"],
                                 "survey": wildcards.survey, "program": wildcards.program},
        defaults=(SPECTRA["default_survey"], SPECTRA["default_program"]),
    log:
        log_pattern("spectra", "survey", "program", "pixgroup", "healpix"),
    benchmark:
        benchmark_pattern("spectra", "survey", "program", "pixgroup", "healpix")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/group_spectra.py"


rule coadd_healpix:
    """Coadd every target of one healpix spectra file."""
    input:
        spectra=pattern("spectra"),
    output:
        coadd=pattern("coadd"),
    params:
        nsig=config["coadd"]["nsig"],
        cameras=config["coadd"]["cameras"],
    log:
        log_pattern("coadd", "survey", "program", "pixgroup", "healpix"),
    benchmark:
        benchmark_pattern("coadd", "survey", "program", "pixgroup", "healpix")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/coadd.py"


rule healpix_list:
    """The pixels of one (survey, program), one per line (after their coadds)."""
    input:
        coadds=lambda wildcards: [spectra_group_path("coadd", g) for g in healpix_groups()
                                  if g[:2] == (wildcards.survey, wildcards.program)],
    output:
        listing=pattern("healpix_list"),
    params:
        pixels=lambda wildcards: [g[2] for g in healpix_groups() if g[:2] == (wildcards.survey, wildcards.program)],
    log:
        log_pattern("healpix_list", "survey", "program"),
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/healpix_list.py"


for _kind in ("cumulative", "pernight", "perexp"):
    _value = "expid" if _kind == "perexp" else "night"

    rule:
        name:
            f"spectra_{_kind}"
        input:
            cframes=spectra_tile_inputs(_kind),
        output:
            spectra=pattern(f"tile_spectra_{_kind}"),
        params:
            group=tile_group_param(_kind),
            defaults=(SPECTRA["default_survey"], SPECTRA["default_program"]),
        log:
            log_pattern(f"spectra_{_kind}", "tileid", "spectrograph", _value),
        benchmark:
            benchmark_pattern(f"spectra_{_kind}", "tileid", "spectrograph", _value)
        conda:
            "../envs/desired.yaml"
        script:
            "../workflow/scripts/group_spectra.py"

    rule:
        name:
            f"coadd_{_kind}"
        input:
            spectra=pattern(f"tile_spectra_{_kind}"),
        output:
            coadd=pattern(f"tile_coadd_{_kind}"),
        params:
            nsig=config["coadd"]["nsig"],
            cameras=config["coadd"]["cameras"],
        log:
            log_pattern(f"coadd_{_kind}", "tileid", "spectrograph", _value),
        benchmark:
            benchmark_pattern(f"coadd_{_kind}", "tileid", "spectrograph", _value)
        conda:
            "../envs/desired.yaml"
        script:
            "../workflow/scripts/coadd.py"
