# Training: one job per model, `python -m experiments.train` (docs/INTERFACES.md).
#
# Inputs are the model's own JSON (results/<run>/configs/<model>.json, rewritten by the
# model_config rule only when its text changes) and the prepared data it trains on, never the
# profile YAML: editing one model retrains only that model. The device and W&B settings reach the
# job as `--runtime` (rules/common.smk, run_settings) and never retrain anything.
#
# Declared outputs: train_summary.json (the trainer writes it when it finishes) and copies of
# the finished run's best.pt and history.csv in checkpoints/<model>/final/, made after training:
# the evaluation and figure rules read only these, so they need no filesystem shared with the
# training job (Snakemake's storage moves declared files). The trainer's own best.pt, last.pt
# and history.csv beside the summary are written during training and deliberately not declared,
# because Snakemake deletes the declared outputs of an interrupted job before rerunning it; left
# alone, they let the trainer continue from last.pt (it restores the history from last.pt, and
# sets a last.pt written for a different configuration aside and starts afresh by itself). They
# live in paths.resume_store/<model> (default: the run's checkpoints folder); on a cluster whose
# nodes share no filesystem, point paths.resume_store at a folder every node reaches, so that a
# resubmitted job resumes after its node is lost. That folder is a derived parameter (a function
# of the outputs), so moving it retrains nothing.


rule train:
    input:
        config=OUT.config_file(CFG, "{model}"),
        data=lambda wc: train_data(wc.model),
    output:
        summary=f"{RESULTS}/checkpoints/{{model}}/train_summary.json",
        model=f"{RESULTS}/checkpoints/{{model}}/final/best.pt",
        history=f"{RESULTS}/checkpoints/{{model}}/final/history.csv",
    log:
        f"{RESULTS}/logs/train/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}.tsv"
    conda:
        "../envs/vhe.yaml"
    threads: lambda wc: model_threads(wc.model)
    resources:
        gpu=gpu_resource,
        mem_mb=model_mem_mb,
        runtime=train_runtime,
        cpus_per_task=lambda wc, threads: threads,
    params:
        py=PY,
        runtime=run_settings,
        out=lambda wc, output: OUT.resume_dir(CFG, wc.model),
    shell:
        r"""
        out={params.out:q}
        if [ -e "$out/last.pt" ]; then
            echo "[pipeline]" {wildcards.model:q}": $out/last.pt exists; the trainer resumes from it if its config matches" > {log:q}
        else
            : > {log:q}
        fi
        OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} \
            {params.py:q} -m experiments.train --config {input.config:q} --out "$out" --runtime {params.runtime:q} >> {log:q} 2>&1
        for f in best.pt history.csv train_summary.json; do
            [ -s "$out/$f" ] || {{ echo "[pipeline] experiments.train finished without writing $out/$f" | tee -a {log:q} >&2; exit 1; }}
        done
        cp -f "$out/best.pt" {output.model:q}
        cp -f "$out/history.csv" {output.history:q}
        [ "$out/train_summary.json" -ef {output.summary:q} ] || cp -f "$out/train_summary.json" {output.summary:q}
        """
