# The per-model configs (results/<run>/configs/<model>.json) and the evaluation settings
# (configs/evaluation.json), written by rules, never while the workflow is parsed: a dry run
# writes nothing. Their text is the rule's parameter, so Snakemake reruns a config rule (and
# what depends on its file) exactly when that text changes; the run settings (device, W&B) are
# not part of it (rules/common.smk, run_settings).


rule model_config:
    output:
        OUT.config_file(CFG, "{model}"),
    log:
        f"{RESULTS}/logs/configs/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/configs/{{model}}.tsv"
    localrule: True
    resources:
        **CONFIG_RESOURCES,
    params:
        text=lambda wc: model_config_text(wc.model),
    run:
        atomic_write_text(params.text, output[0])
        atomic_write_text(f"wrote {output[0]}\n", log[0])


rule evaluation_config:
    output:
        EVALUATION_CONFIG,
    log:
        f"{RESULTS}/logs/configs/evaluation.log",
    benchmark:
        f"{RESULTS}/benchmarks/configs/evaluation.tsv"
    localrule: True
    resources:
        **CONFIG_RESOURCES,
    params:
        text=config_json(CFG["evaluation"]),
    run:
        atomic_write_text(params.text, output[0])
        atomic_write_text(f"wrote {output[0]}\n", log[0])
