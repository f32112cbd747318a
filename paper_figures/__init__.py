"""Tables (CSV, Markdown, LaTeX), figures (PNG, PDF) and the summary page of a run.

    python -m paper_figures.make --run-dir results/<run>

reads ``results/<run>/metrics/*.json`` and ``results/<run>/checkpoints/*/history.csv``.
``paper_figures.outputs`` lists what the pipeline produces for a config (used by the
Snakefile's ``all`` rule and by ``scripts/check_outputs.py``).
"""
