# Stage: redshifts. One redshift job per healpix coadd, then one catalog per survey/program
# (helpers in rules/common_redshift.smk).


rule templates:
    """Build the project's own redrock-format template set into the calib tree (`desired templates`)."""
    output:
        listing=BUILT_TEMPLATES,
    params:
        seed=config["templates"].get("seed", 1),
        quick=bool(config["templates"].get("quick", False)),
    threads: config["templates"].get("nproc", 1)
    log:
        log_pattern("templates"),
    benchmark:
        benchmark_pattern("templates")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/templates.py"


rule redshifts:
    """Fit redshifts to one healpix coadd (redrock format); MPI ranks split the target batches."""
    input:
        coadd=pattern("coadd"),
        templates=redshift_template_inputs,
    output:
        **redshift_outputs(),
    params:
        options=lambda wildcards, output: redshift_options().format(output=output),
        launch=mpi_launch,
        mpi=mpi_flag,
        desired=DESIRED,
    threads: config["redshifts"]["nproc"]
    resources:
        nodes=1,
        tasks=config["redshifts"]["tasks"],
        # SLURM's executor refuses an MPI job of one task: one task runs as a plain job
        mpi="srun" if config["redshifts"]["tasks"] > 1 else "",
    log:
        log_pattern("redshifts", "survey", "program", "pixgroup", "healpix"),
    benchmark:
        benchmark_pattern("redshifts", "survey", "program", "pixgroup", "healpix")
    conda:
        "../envs/desired.yaml"
    # shell, not script: the SLURM profile starts this step under `srun -n N` ({params.launch})
    shell:
        "{params.launch} {params.desired} --log-file {log} redshifts --infile {input.coadd}"
        " --outfile {output.redrock} {params.options} {params.mpi}"


rule zcatalog:
    """Stack every healpix redshift file of a survey/program into zpix-{survey}-{program}.fits."""
    input:
        zcatalog_inputs,
    output:
        zcatalog=pattern("zcatalog"),
    log:
        log_pattern("zcatalog", "survey", "program"),
    benchmark:
        benchmark_pattern("zcatalog", "survey", "program")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/zcatalog.py"
