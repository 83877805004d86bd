# Stage 4: spectral extraction per flat/science camera -> frame.


rule extract:
    """Spectro-perfectionism extraction of one flat/science camera (MPI ranks split the bundles)."""
    input:
        image=pattern("preproc"),
        psf=pattern("shifted_psf"),
        fibermap=fibermap_input,
    output:
        frame=pattern("frame"),
    params:
        fibermap=lambda wildcards, input: f"--fibermap {input.fibermap}" if input.fibermap else "",
        options=extract_options(),
        launch=mpi_launch,
        mpi=mpi_flag,
    resources:
        nodes=config["extract"]["nodes"],
        tasks=config["extract"]["tasks"],
        # SLURM's executor refuses an MPI job of one task: one task runs as a plain job
        mpi="srun" if config["extract"]["tasks"] > 1 else "",
    log:
        log_pattern("extract", "night", "camera", "expid"),
    benchmark:
        benchmark_pattern("extract", "night", "camera", "expid")
    group:
        step_group("extract")
    conda:
        "../envs/desired.yaml"
    # shell, not script: the SLURM profile starts this step under `srun -n N` ({params.launch})
    shell:
        f"{{params.launch}} {DESIRED} extract --image {{input.image}} --psf {{input.psf}}"
        " --outfile {output.frame} {params.fibermap} {params.options} {params.mpi} > {log} 2>&1"
