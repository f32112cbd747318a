# Training: one job per model, `python -m experiments.train` (docs/INTERFACES.md).
#
# Inputs are the model's own JSON (results/<run>/configs/<model>.json, rewritten by the
# Snakefile only when its content changes) and the prepared data it trains on, never the
# profile YAML: editing one model retrains only that model.
#
# Resuming: the declared output is train_summary.json, which the trainer writes when it
# finishes. best.pt, last.pt and history.csv are written during training and are deliberately
# not declared, because Snakemake deletes the declared outputs of an interrupted job before
# rerunning it; left alone, they let the trainer continue from last.pt (it restores the
# history from last.pt, and sets a last.pt written for a different configuration aside and
# starts afresh by itself).


def gpu_resource(wildcards):
    """gpu=1 when the config's device is cuda, or auto on a machine with a GPU."""
    return GPU


rule train:
    input:
        config=f"{RESULTS}/configs/{{model}}.json",
        data=lambda wc: train_data(wc.model),
    output:
        summary=f"{RESULTS}/checkpoints/{{model}}/train_summary.json",
    params:
        out=f"{RESULTS}/checkpoints/{{model}}",
    log:
        f"{RESULTS}/logs/train/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}.tsv"
    threads: lambda wc: model_threads(wc.model)
    resources:
        gpu=gpu_resource,
    shell:
        r"""
        out={params.out:q}
        if [ -e "$out/last.pt" ]; then
            echo "[pipeline] {wildcards.model}: $out/last.pt exists; the trainer resumes from it if its config matches" > {log:q}
        else
            : > {log:q}
        fi
        OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} \
            {PY:q} -m experiments.train --config {input.config:q} --out "$out" >> {log:q} 2>&1
        for f in best.pt history.csv; do
            [ -s "$out/$f" ] || {{ echo "[pipeline] experiments.train finished without writing $out/$f" | tee -a {log:q} >&2; exit 1; }}
        done
        """
