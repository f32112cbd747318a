# Tables, figures and the summary page: `python -m paper_figures.make --run-dir results/<run>`.
# Every table and figure is marked for `snakemake --report` (categories Tables / Figures /
# Summary; the per-model sample sheets and structured grids are marked in rules/evaluate.smk).


rule paper_figures:
    input:
        metrics=[OUT.metrics_file(CFG, m) for m in MODELS],
        trained=[trained(m) for m in MODELS],
        histories=[final_history(m) for m in MODELS],
        samples=[OUT.sample_figure(CFG, m) for m in CLASS_MODELS],
        structured=[f for m in STRUCTURED_MODELS for f in OUT.structured_figures(CFG, m)],
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
        seeds_csv=table_output("seeds.csv", "models trained with several seeds (CSV)"),
        seeds_md=f"{RESULTS}/tables/seeds.md",
        families_csv=table_output("families.csv", "vector against spatial network family (CSV)"),
        families_md=f"{RESULTS}/tables/families.md",
        learning_png=figure_output("learning_curves", "png", "learning curves"),
        learning_pdf=figure_output("learning_curves", "pdf", "learning curves"),
        curves_png=figure_output("training_curves", "png", "training curves"),
        curves_pdf=figure_output("training_curves", "pdf", "training curves"),
        kl_png=figure_output("kl_c", "png", "KL(c) per objective and decoder"),
        kl_pdf=figure_output("kl_c", "pdf", "KL(c) per objective and decoder"),
        montage_png=report(
            f"{RESULTS}/figures/samples_montage.png",
            caption=caption("samples"),
            category="Figures",
            labels={"figure": "1-shot samples, all models"},
        ),
        montage_pdf=figure_output("samples_montage", "pdf", "1-shot samples, all models"),
        summary_md=f"{RESULTS}/summary.md",
        summary_html=report(
            f"{RESULTS}/summary.html", caption=caption("summary"), category="Summary", labels={"page": "summary"}
        ),
    log:
        f"{RESULTS}/logs/paper_figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper_figures.tsv"
    conda:
        "../envs/vhe.yaml"
    threads: 1
    resources:
        mem_mb=MEM_MB["figures"],
        runtime=60,
        cpus_per_task=1,
    params:
        py=PY,
        runtime=run_settings,
        run_dir=lambda wc, output: os.path.dirname(output.summary_md),
    shell:
        r"""
        {params.py:q} -m paper_figures.make --run-dir {params.run_dir:q} --runtime {params.runtime:q} > {log:q} 2>&1
        """


# the rule's outputs and the list scripts/check_outputs.py checks must agree (under a storage
# provider a declared output is its storage query: the path behind a prefix)
_declared = [str(f.storage_object.query if f.is_storage else f) for f in rules.paper_figures.output]
assert OUT.same_paths(_declared, OUT.paper_figure_outputs(CFG)), sorted(_declared)
