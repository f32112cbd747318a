"""experiments.sections: the typed sections have exactly the schema's keys and no defaults."""

import dataclasses

import pytest

from experiments.config import ConfigError, load_config, load_schema
from experiments.sections import Evaluation, Nets, Train


def _schema_keys(schema, section):
    node = schema["properties"][section]
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    return set(node["properties"])


@pytest.mark.parametrize("cls,section", [(Nets, "nets"), (Train, "train"), (Evaluation, "evaluation")])
def test_fields_are_the_schema_properties_without_defaults(cls, section):
    fields = dataclasses.fields(cls)
    assert {f.name for f in fields} == _schema_keys(load_schema(), section)
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in fields)


def test_built_from_a_filled_config_and_strict():
    cfg = load_config({"run": "t"})
    tr = Train.of(cfg["train"])
    assert tr.lr_schedule == cfg["train"]["lr_schedule"] and Train.of(tr) is tr
    assert tr.to_dict() == cfg["train"]
    with pytest.raises(AttributeError):
        tr.lr_schedul  # noqa: B018 - a typo in code is an error
    with pytest.raises(dataclasses.FrozenInstanceError):
        tr.lr = 1.0
    with pytest.raises(ConfigError, match="missing train.lr_schedule"):
        Train.of({k: v for k, v in cfg["train"].items() if k != "lr_schedule"})
    with pytest.raises(ConfigError, match="unknown train.lr_schedul"):
        Train.of({**cfg["train"], "lr_schedul": "cosine"})


def test_per_decoder_overrides():
    cfg = load_config(
        {
            "run": "t",
            "evaluation": {"classification_samples": 10, "per_decoder": {"pixelcnn": {"classification_samples": 3}}},
        }
    )
    ev = Evaluation.of(cfg["evaluation"])
    assert ev.for_decoder("pixelcnn").classification_samples == 3
    assert ev.for_decoder("deconv").classification_samples == 10
    assert ev.for_decoder("pixelcnn").n_samples == ev.n_samples
