"""Pipeline plumbing shared by the Snakefile and the scripts around it.

``pipeline.outputs`` lists what the pipeline produces for a resolved config (used by the
Snakefile's ``all`` rule, ``scripts/check_outputs.py``, ``paper_figures.make`` and the tests).
"""
