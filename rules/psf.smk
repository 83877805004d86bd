# Stage 3: PSF fit per arc camera (ok/failed sidecar), psfnight per (night, camera)
# over the arcs whose fit succeeded, traceshift per flat/science camera.


rule psf:
    """Fit the GAUSS-HERMITE PSF of one arc camera (a data error is recorded in the sidecar, others fail)."""
    input:
        preproc=status_pattern("preproc"),
        psf=pattern("calib_psf"),
    output:
        status=status_pattern("psf"),
    params:
        image=pattern("preproc"),
        psf=pattern("psf"),
        launch=mpi_launch,
        mpi=mpi_flag,
    resources:
        nodes=config["psf"]["nodes"],
        tasks=config["psf"]["tasks"],
        # SLURM's executor refuses an MPI job of one task: one task runs as a plain job
        mpi="srun" if config["psf"]["tasks"] > 1 else "",
    log:
        log_pattern("psf", "night", "camera", "expid"),
    benchmark:
        benchmark_pattern("psf", "night", "camera", "expid")
    group:
        step_group("psf")
    conda:
        "../envs/desired.yaml"
    # shell, not script: the SLURM profile starts this step under `srun -n N` ({params.launch})
    shell:
        "rm -f {params.psf}; "
        "if ! grep -qx ok {input.preproc}; then "
        "{{ echo failed; echo \"preproc of this arc failed: $(sed -n 2p {input.preproc})\"; }} > {output.status}; "
        "echo \"arc preproc failed: nothing to fit\" > {log}; exit 0; fi; "
        + tolerant(f"{{params.launch}} {DESIRED} psf --infile {{params.image}} --input-psf {{input.psf}}"
                   " --outfile {params.psf} {params.mpi} > {log} 2>&1")


rule psfnight:
    """Combine the night's successful arc PSFs of one camera (fallback PSF or clear error when none)."""
    input:
        status=psfnight_inputs,
    output:
        psf=pattern("psfnight"),
    params:
        fallback=psfnight_fallback,
        dropped=psfnight_dropped,
    log:
        log_pattern("psfnight", "night", "camera"),
    benchmark:
        benchmark_pattern("psfnight", "night", "camera")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/psfnight.py"


rule traceshift:
    """Measure the trace shifts of a flat/science camera against psfnight -> shifted PSF."""
    input:
        image=pattern("preproc"),
        psf=pattern("psfnight"),
    output:
        psf=pattern("shifted_psf"),
    params:
        sky_template=traceshift_sky_template,
    log:
        log_pattern("traceshift", "night", "camera", "expid"),
    benchmark:
        benchmark_pattern("traceshift", "night", "camera", "expid")
    group:
        step_group("traceshift")
    conda:
        "../envs/desired.yaml"
    script:
        "../workflow/scripts/traceshift.py"
