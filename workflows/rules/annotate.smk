# Annotate each genome of config["genomes_to_annotate"] ({name: fasta}) with the model: one job
# per genome. Inside a job every contig is decoded whole by the semi-CRF (no seams), so a genome
# can later be scattered by contig without changing the result: see workflows/README.md.


def annotate_outputs(genome):
    """Output paths of one genome's annotate job, by kind (those in config["outputs"])."""
    paths = {
        "gff3": f"{OUTDIR}/{genome}/{genome}.gff3",
        "bed": f"{OUTDIR}/{genome}/{genome}.bed",
        "posteriors": directory(f"{OUTDIR}/{genome}/posteriors"),
    }
    return {kind: paths[kind] for kind in OUTPUTS}


def annotate_flags(wildcards, output):
    flags = []
    if "gff3" in OUTPUTS:
        flags.append(f"--output '{output.gff3}'")
    if "bed" in OUTPUTS:
        flags.append(f"--bed '{output.bed}'")
    if "posteriors" in OUTPUTS:
        flags.append(f"--posteriors '{output.posteriors}/{wildcards.genome}'")
    return " ".join(flags)


rule annotate:
    input:
        genome=lambda wildcards: GENOMES[wildcards.genome],
        # A trained model is an input (so annotation waits for training); a given one is not.
        model=rules.train.output.weights if TRAIN else [],
    output:
        **annotate_outputs("{genome}"),
    log:
        f"{LOGDIR}/annotate.{{genome}}.log",
    params:
        genoseg=GENOSEG,
        model=MODEL_DIR,
        device=config["device"],
        backend=config.get("backend") or "auto",
        outputs=annotate_flags,
        extra=config["annotate_args"] or "",
    threads: int(config["threads"])
    resources:
        mem_mb=16000,
        runtime=240,  # minutes
    shell:
        "OMP_NUM_THREADS={threads} {params.genoseg} annotate {input.genome:q}"
        " --model {params.model:q} --device {params.device:q} --backend {params.backend:q}"
        " {params.outputs} --quiet {params.extra} 2> {log:q}"
