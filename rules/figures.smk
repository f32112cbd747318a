# Tables, figures and the summary page: `python -m paper_figures.make --run-dir results/<run>`.
# Every table and figure is marked for `snakemake --report` (categories Tables / Figures /
# Summary; the per-model sample sheets and structured grids are marked in rules/evaluate.smk).


rule paper_figures:
    input:
        metrics=[metrics_of(m) for m in MODELS],
        trained=[trained(m) for m in MODELS],
        histories=[final_history(m) for m in MODELS],
        samples=expand(rules.evaluate.output.samples, class_model=CLASS_MODELS),
        structured=expand(rules.evaluate_structured.output.figures, structured_model=STRUCTURED_MODELS),
        data_gap=rules.data_gap.output,
        baselines=rules.baselines.output if CFG["evaluation"]["lake_runs"] else [],
    output:
        metrics_csv=table_output("metrics.csv", "every metric of every model, long form (CSV)"),
        objectives_csv=table_output("objectives.csv", "objectives (CSV)"),
        objectives_md=f"{RESULTS}/tables/objectives.md",
        objectives_tex=f"{RESULTS}/tables/objectives.tex",
        claims_csv=table_output("claims.csv", "claims of the paper (CSV)"),
        claims_md=f"{RESULTS}/tables/claims.md",
        classification_csv=table_output("classification.csv", "one-shot classification, every estimator (CSV)"),
        classification_md=f"{RESULTS}/tables/classification.md",
        classification_tex=f"{RESULTS}/tables/classification.tex",
        learning_curves_csv=table_output("learning_curves.csv", "learning curves (CSV)"),
        learning_curves_md=f"{RESULTS}/tables/learning_curves.md",
        structured_csv=table_output("structured.csv", "hierarchical and factorial models (CSV)"),
        structured_md=f"{RESULTS}/tables/structured.md",
        structured_tex=f"{RESULTS}/tables/structured.tex",
        learning_png=figure_output("learning_curves", "png", "learning curves"),
        learning_pdf=figure_output("learning_curves", "pdf", "learning curves"),
        curves_png=figure_output("training_curves", "png", "training curves"),
        curves_pdf=figure_output("training_curves", "pdf", "training curves"),
        kl_png=figure_output("kl_c", "png", "KL(c) per objective and decoder"),
        kl_pdf=figure_output("kl_c", "pdf", "KL(c) per objective and decoder"),
        montage_png=report(f"{RESULTS}/figures/samples_montage.png", caption=caption("samples"), category="Figures",
                           labels={"figure": "1-shot samples, all models"}),
        montage_pdf=figure_output("samples_montage", "pdf", "1-shot samples, all models"),
        summary_md=f"{RESULTS}/summary.md",
        summary_html=report(f"{RESULTS}/summary.html", caption=caption("summary"), category="Summary",
                            labels={"page": "summary"}),
    params:
        py=PY,
        run_dir=lambda wc, output: os.path.dirname(output.summary_md),
    log:
        f"{RESULTS}/logs/paper_figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper_figures.tsv"
    threads: 1
    resources:
        mem_mb=MEM_MB["figures"],
        runtime=60,
        cpus_per_task=1,
    conda:
        "../envs/vhe.yaml"
    shell:
        r"""
        {params.py:q} -m paper_figures.make --run-dir {params.run_dir:q} > {log:q} 2>&1
        """


# the rule's outputs and the list scripts/check_outputs.py checks must agree
assert set(rules.paper_figures.output) == set(OUT.paper_figure_outputs(CFG)), (
    sorted(set(rules.paper_figures.output) ^ set(OUT.paper_figure_outputs(CFG))))
