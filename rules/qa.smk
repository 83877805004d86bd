# Stage QA: exposure-qa metrics per exposure (qa_exposure) and the production's static HTML
# report (qa_report), the last job of the DAG.  Products of later stages (fiberflat, sky,
# fluxcalib, cframe) become inputs of qa_exposure only when a rule of the workflow writes them;
# the report waits for every other registered target.  Helpers: rules/common.smk (qa.smk).

rule qa_exposure:
    """QA metrics of every camera of one exposure -> exposure-qa-{expid}.fits."""
    input:
        qa_exposure_inputs,
    output:
        qa=pattern("qa_exposure"),
    log:
        log_pattern("qa_exposure", "night", "expid"),
    benchmark:
        benchmark_pattern("qa_exposure", "night", "expid")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/qa_exposure.py"


rule qa_report:
    """The production's static HTML report (nights, exposures, cameras, healpix pixels, status)."""
    input:
        qa_report_inputs,
    output:
        index=pattern("qa_report"),
    params:
        templates=REDSHIFT_TEMPLATES,  # best-fit models of the healpix pages (no rrmodel by default)
    log:
        log_pattern("qa_report"),
    benchmark:
        benchmark_pattern("qa_report")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/qa_report.py"
