# Evaluation: metrics JSON per model (results/<run>/metrics/<model>.json) and figures.
#
# - class-structured models and the VAE baseline: `python -m analysis.evaluate`
#   (importance-sampled -log p(X)/|X|, the bound, KL(c), one-shot classification, and a
#   1-shot sample sheet results/<run>/figures/samples_<model>.png);
# - hierarchical and factorial models: `python -m analysis.structured` (metrics and the
#   sample grids results/<run>/figures/{hierarchical,factorial}_*.png).
# hierarchical: compared with the class-structured model its `compare_with` names, else the one of the
# same objective and decoder (pipeline.outputs.comparison_model).
# The checkpoint is the finished run's checkpoints/<model>/final/best.pt, a declared output of the
# train rule (see rules/train.smk), beside the marker train_summary.json (its W&B run id).


rule evaluate:
    input:
        config=OUT.config_file(CFG, "{class_model}"),
        evaluation=EVALUATION_CONFIG,
        trained=lambda wc: trained(wc.class_model),
        model=lambda wc: final_model(wc.class_model),
        data=lambda wc: job_data(wc.class_model),
    output:
        metrics=f"{RESULTS}/metrics/{{class_model}}.json",
        samples=report(
            f"{RESULTS}/figures/samples_{{class_model}}.png",
            caption=caption("samples"),
            category="1-shot samples",
            labels={"model": "{class_model}", "figure": "1-shot samples"},
        ),
    log:
        f"{RESULTS}/logs/evaluate/{{class_model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{class_model}}.tsv"
    conda:
        "../envs/vhe.yaml"
    threads: lambda wc: model_threads(wc.class_model)
    resources:
        gpu=gpu_resource,
        mem_mb=model_mem_mb,
        runtime=eval_runtime,
        cpus_per_task=lambda wc, threads: threads,
    params:
        py=PY,
        runtime=run_settings,
        figures=lambda wc, output: os.path.dirname(output.samples),
    shell:
        r"""
        OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} \
            {params.py:q} -m analysis.evaluate --config {input.config:q} --evaluation {input.evaluation:q} --checkpoint {input.model:q} \
            --out {output.metrics:q} --figures {params.figures:q} --runtime {params.runtime:q} > {log:q} 2>&1
        """


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
    log:
        f"{RESULTS}/logs/evaluate/{{structured_model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{structured_model}}.tsv"
    conda:
        "../envs/vhe.yaml"
    threads: lambda wc: model_threads(wc.structured_model)
    resources:
        gpu=gpu_resource,
        mem_mb=model_mem_mb,
        runtime=eval_runtime,
        cpus_per_task=lambda wc, threads: threads,
    params:
        py=PY,
        runtime=run_settings,
        figures=lambda wc, output: os.path.dirname(output.figures),
        extra=structured_extra_args,
    shell:
        r"""
        OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} \
            {params.py:q} -m analysis.structured --config {input.config:q} --evaluation {input.evaluation:q} --checkpoint {input.model:q} \
            --out {output.metrics:q} --figures {params.figures:q} {params.extra:q} --runtime {params.runtime:q} > {log:q} 2>&1
        """


# Non-learned baselines on Lake's runs (pixel nearest neighbour, Lake's modified Hausdorff
# distance) at 28x28 (the prepared runs the models see) and on the 105x105 originals, on the same
# trials as the models: the first evaluation.max_runs runs when it is set.
if CFG["evaluation"]["lake_runs"]:

    rule baselines:
        input:
            runs=rules.lake_runs.output,
            zip=OUT.raw_file("all_runs.zip"),
        output:
            f"{RESULTS}/metrics/baselines.json",
        log:
            f"{RESULTS}/logs/evaluate/baselines.log",
        benchmark:
            f"{RESULTS}/benchmarks/evaluate/baselines.tsv"
        conda:
            "../envs/vhe.yaml"
        threads: 1
        resources:
            **DATA_RESOURCES,
        params:
            py=PY,
            max_runs=["--max-runs", str(CFG["evaluation"]["max_runs"])] if CFG["evaluation"].get("max_runs") else [],
        shell:
            r"""
            OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} \
                {params.py:q} -m analysis.baselines --runs-28 {input.runs:q} --zip {input.zip:q} --out {output:q} \
                {params.max_runs:q} > {log:q} 2>&1
            """
