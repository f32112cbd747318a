# Evaluation: metrics JSON per model (results/<run>/metrics/<model>.json) and figures.
#
# - class-structured models and the VAE baseline: `python -m analysis.evaluate`
#   (importance-sampled -log p(X)/|X|, the bound, KL(c), one-shot classification, and a
#   1-shot sample sheet results/<run>/figures/samples_<model>.png);
# - hierarchical and factorial models: `python -m analysis.structured` (metrics and the
#   sample grids results/<run>/figures/{hierarchical,factorial}_*.png).
# hierarchical: compared with the class-structured model of the same objective and decoder.
# The checkpoint is read from best.pt; the job depends on train_summary.json, the marker the
# trainer writes when it has finished (see rules/train.smk).


rule evaluate:
    input:
        config=f"{RESULTS}/configs/{{class_model}}.json",
        evaluation=EVALUATION_CONFIG,
        trained=f"{RESULTS}/checkpoints/{{class_model}}/train_summary.json",
        data=lambda wc: sorted(set(train_data(wc.class_model) + eval_data(wc.class_model))),
    output:
        metrics=f"{RESULTS}/metrics/{{class_model}}.json",
        samples=report(
            f"{RESULTS}/figures/samples_{{class_model}}.png",
            caption=caption("samples"),
            category="1-shot samples",
            labels={"model": "{class_model}", "figure": "1-shot samples"},
        ),
    params:
        checkpoint=f"{RESULTS}/checkpoints/{{class_model}}/best.pt",
        figures=f"{RESULTS}/figures",
    log:
        f"{RESULTS}/logs/evaluate/{{class_model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{class_model}}.tsv"
    threads: lambda wc: model_threads(wc.class_model)
    resources:
        gpu=gpu_resource,
    shell:
        r"""
        OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} \
            {PY:q} -m analysis.evaluate --config {input.config:q} --evaluation {input.evaluation:q} --checkpoint {params.checkpoint:q} \
            --out {output.metrics:q} --figures {params.figures:q} > {log:q} 2>&1
        """


def comparison_model(name):
    """hierarchical: the class-structured model with the same objective and decoder (its bound and
    -log p(X) are reported beside the hierarchical model's), or None."""
    if MODELS[name] != "hierarchical":
        return None
    mine = CFG["models"][name]
    for other in CLASS_MODELS:
        entry = CFG["models"][other]
        if (entry["experiment"] == "class" and entry.get("objective", "vhe") == mine.get("objective", "vhe")
                and entry.get("decoder", "deconv") == mine.get("decoder", "deconv")):
            return other
    return None


def structured_inputs(wildcards):
    name = wildcards.structured_model
    files = {"config": model_config_file(name), "evaluation": EVALUATION_CONFIG, "trained": OUT.checkpoint_outputs(CFG, name)["summary"],
             "data": sorted(set(train_data(name) + eval_data(name)))}
    other = comparison_model(name)
    if other:
        files["class_config"] = model_config_file(other)
        files["class_trained"] = OUT.checkpoint_outputs(CFG, other)["summary"]
    return files


def structured_extra_args(wildcards):
    other = comparison_model(wildcards.structured_model)
    if not other:
        return ""
    best = OUT.checkpoint_outputs(CFG, other)["best"]
    return f"--class-checkpoint {shlex.quote(best)} --class-config {shlex.quote(model_config_file(other))}"


rule evaluate_structured:
    input:
        unpack(structured_inputs),
    output:
        metrics=f"{RESULTS}/metrics/{{structured_model}}.json",
        figures=report(
            f"{RESULTS}/figures/{{structured_model}}_samples.png",
            caption=caption("structured"),
            category="Structured models",
            labels={"model": "{structured_model}", "figure": "samples"},
        ),
    params:
        checkpoint=f"{RESULTS}/checkpoints/{{structured_model}}/best.pt",
        figures=f"{RESULTS}/figures",
        extra=structured_extra_args,
    log:
        f"{RESULTS}/logs/evaluate/{{structured_model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{structured_model}}.tsv"
    threads: lambda wc: model_threads(wc.structured_model)
    resources:
        gpu=gpu_resource,
    shell:
        r"""
        OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} \
            {PY:q} -m analysis.structured --config {input.config:q} --evaluation {input.evaluation:q} --checkpoint {params.checkpoint:q} \
            --out {output.metrics:q} --figures {params.figures:q} {params.extra} > {log:q} 2>&1
        """


# Non-learned baselines on Lake's runs (pixel nearest neighbour, Lake's modified Hausdorff
# distance) at 28x28 (the prepared runs the models see) and on the 105x105 originals, on the same
# trials as the models: the first evaluation.max_runs runs when it is set.
if CFG["evaluation"]["lake_runs"]:

    rule baselines:
        input:
            runs=PATHS["lake_runs"],
            zip="resources/raw/all_runs.zip",
        output:
            f"{RESULTS}/metrics/baselines.json",
        params:
            max_runs=f"--max-runs {int(CFG['evaluation']['max_runs'])}" if CFG["evaluation"].get("max_runs") else "",
        log:
            f"{RESULTS}/logs/evaluate/baselines.log",
        benchmark:
            f"{RESULTS}/benchmarks/evaluate/baselines.tsv"
        threads: 1
        shell:
            r"""
            OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} \
                {PY:q} -m analysis.baselines --runs-28 {input.runs:q} --zip {input.zip:q} --out {output:q} \
                {params.max_runs} > {log:q} 2>&1
            """
