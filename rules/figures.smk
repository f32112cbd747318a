# Tables, figures and the summary page: `python -m paper_figures.make --run-dir results/<run>`.
# Every table and figure is marked for `snakemake --report` (categories Tables / Figures /
# Summary; the per-model sample sheets and structured grids are marked in rules/evaluate.smk).


def _figure(stem, ext, title):
    path = f"{RESULTS}/figures/{stem}.{ext}"
    if ext != "png":
        return path  # the PDF twins are not duplicated in the report
    return report(path, caption=caption(stem), category="Figures", labels={"figure": title})


def _table(name, title):
    return report(f"{RESULTS}/tables/{name}", caption=caption(name.split(".")[0]), category="Tables",
                  labels={"table": title})


def _data_gap():
    path = f"{RESULTS}/metrics/data_gap.json"
    return [path] if path in DATA_TARGETS else []


rule paper_figures:
    input:
        metrics=[OUT.metrics_file(CFG, m) for m in MODELS],
        trained=[OUT.checkpoint_outputs(CFG, m)["summary"] for m in MODELS],
        samples=[OUT.sample_figure(CFG, m) for m in CLASS_MODELS],
        structured=[f for m in STRUCTURED_MODELS for f in OUT.structured_figures(CFG, m)],
        data_gap=_data_gap(),
        baselines=OUT.baseline_files(CFG),
    output:
        objectives_csv=_table("objectives.csv", "objectives (CSV)"),
        objectives_md=f"{RESULTS}/tables/objectives.md",
        objectives_tex=f"{RESULTS}/tables/objectives.tex",
        claims_csv=_table("claims.csv", "claims of the paper (CSV)"),
        claims_md=f"{RESULTS}/tables/claims.md",
        classification_csv=_table("classification.csv", "one-shot classification, every estimator (CSV)"),
        classification_md=f"{RESULTS}/tables/classification.md",
        classification_tex=f"{RESULTS}/tables/classification.tex",
        learning_curves_csv=_table("learning_curves.csv", "learning curves (CSV)"),
        learning_png=_figure("learning_curves", "png", "learning curves"),
        learning_pdf=_figure("learning_curves", "pdf", "learning curves"),
        curves_png=_figure("training_curves", "png", "training curves"),
        curves_pdf=_figure("training_curves", "pdf", "training curves"),
        kl_png=_figure("kl_c", "png", "KL(c) per objective and decoder"),
        kl_pdf=_figure("kl_c", "pdf", "KL(c) per objective and decoder"),
        montage_png=report(f"{RESULTS}/figures/samples_montage.png", caption=caption("samples"), category="Figures",
                           labels={"figure": "1-shot samples, all models"}),
        montage_pdf=_figure("samples_montage", "pdf", "1-shot samples, all models"),
        summary_md=f"{RESULTS}/summary.md",
        summary_html=report(f"{RESULTS}/summary.html", caption=caption("summary"), category="Summary",
                            labels={"page": "summary"}),
    params:
        run_dir=RESULTS,
    log:
        f"{RESULTS}/logs/paper_figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/paper_figures.tsv"
    threads: 1
    shell:
        r"""
        {PY:q} -m paper_figures.make --run-dir {params.run_dir:q} > {log:q} 2>&1
        """


# the rule's outputs and the list scripts/check_outputs.py checks must agree
assert set(rules.paper_figures.output) == set(OUT.paper_figure_outputs(CFG)), (
    sorted(set(rules.paper_figures.output) ^ set(OUT.paper_figure_outputs(CFG))))
