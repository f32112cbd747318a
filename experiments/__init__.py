"""Experiment suite: configuration, one model builder per experiment, and the single trainer.

- :mod:`experiments.config`: ``load_config``, ``model_config``, ``dump_json_if_changed``.
- :mod:`experiments.registry`: ``build_experiment(cfg, device)`` -> :class:`experiments.common.Experiment`.
- :mod:`experiments.trainer` / ``python -m experiments.train``: training with exact resumption.
"""
