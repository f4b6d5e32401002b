# Train one model directory from config["genome"] + config["annotation"] with
# config["train_config"]. The four model files are the outputs, not the whole directory:
# Snakemake deletes the outputs of a failed or killed job, and the checkpoint.pt left beside them
# lets the rerun resume where the job stopped (`genoseg train` resumes on its own).


rule train:
    input:
        genome=config["genome"],
        annotation=config["annotation"],
        train_config=config["train_config"],
    output:
        config=f"{MODEL_DIR}/config.toml",
        weights=f"{MODEL_DIR}/weights.pt",
        meta=f"{MODEL_DIR}/model.json",
        card=f"{MODEL_DIR}/MODEL_CARD.md",
    log:
        f"{LOGDIR}/train.log",
    params:
        genoseg=GENOSEG,
        model_dir=MODEL_DIR,
        device=config["device"],
        backend=config.get("backend") or "auto",
        extra=config["train_args"] or "",
    threads: int(config["threads"])
    resources:
        mem_mb=8000,
        runtime=720,  # minutes
    shell:
        "OMP_NUM_THREADS={threads} {params.genoseg} train"
        " --genome {input.genome:q} --annotation {input.annotation:q}"
        " --config {input.train_config:q} --output {params.model_dir:q}"
        " --device {params.device:q} --backend {params.backend:q} --quiet {params.extra}"
        " 2> {log:q}"
