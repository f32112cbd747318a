"""Tables (CSV, Markdown, LaTeX), figures (PNG, PDF) and the summary page of a run.

    python -m paper_figures.make --run-dir results/<run>

reads ``results/<run>/metrics/*.json``, ``configs/*.json`` and
``checkpoints/*/{final/history.csv,train_summary.json}`` into one long-form table
(:mod:`paper_figures.metrics`, written as ``tables/metrics.csv``) from which every table
(:mod:`~paper_figures.tables`, :mod:`~paper_figures.claims`), figure (:mod:`~paper_figures.figures`)
and the summary page (:mod:`~paper_figures.summary`) are derived. What the pipeline produces
for a config is listed in :mod:`pipeline.outputs`.
"""
