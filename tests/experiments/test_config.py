"""experiments.config: defaults, validation messages, profiles, per-model configs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from experiments.config import (ConfigError, dump_json_if_changed, load_config, load_schema, model_config,
                                training_config)

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ["config/config.yaml", "config/cpu.yaml", "config/smoke.yaml"]
ALL_MODELS = {"vae_deconv", "vae_pixelcnn", "hierarchical", "factorial"} | {
    f"{o}_{d}" for o in ("ns", "resample", "rescale", "vhe") for d in ("deconv", "pixelcnn")}


def test_defaults_filled_recursively():
    cfg = load_config({})
    assert cfg["run"] == "paper" and cfg["seed"] == 0 and cfg["device"] == "auto"
    assert cfg["wandb"] == {"mode": "offline", "project": "vhe-reproduction", "entity": None}
    assert cfg["train"]["lr"] == 1e-3 and cfg["train"]["lr_schedule"] == "cosine"
    assert cfg["nets"]["pixelcnn"] == {"n_layers": 6, "channels": 32, "kernel_size": 5, "cond_channels": 8}
    assert cfg["evaluation"]["episodes"]["ways"] == [5, 20]
    assert cfg["data"]["max_characters"] is None and cfg["data"]["val_fraction"] == 0.1
    assert set(cfg["models"]) == ALL_MODELS
    assert cfg["models"]["ns_pixelcnn"] == {"experiment": "class", "objective": "ns", "decoder": "pixelcnn",
                                            "nets": {}, "train": {}}
    assert "model" not in cfg


def test_every_schema_key_has_a_default():
    schema = load_schema()

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            if path + (key,) == ("model",):
                continue  # only in per-model configs
            target = sub
            if "$ref" in sub:
                target = {**schema["$defs"][sub["$ref"].split("/")[-1]], **sub}
            assert "default" in target, ".".join(path + (key,))
            assert target.get("type") != "object" or target.get("additionalProperties") is not None, key
            walk(target, path + (key,))

    walk(schema, ())


def test_paths_filled_from_run_and_explicit_paths_kept():
    cfg = load_config({"run": "smoke", "paths": {"background": "/data/bg.pt"}})
    assert cfg["paths"]["results"] == "results/smoke"
    assert cfg["paths"]["evaluation"] == "resources/smoke/evaluation.pt"
    assert cfg["paths"]["lake_runs"] == "resources/smoke/lake_runs.pt"
    assert cfg["paths"]["background"] == "/data/bg.pt"


def test_typo_at_top_level_suggests_the_key():
    with pytest.raises(ConfigError, match=r"unknown key 'trian' at top level; did you mean 'train'\?"):
        load_config({"trian": {"lr": 0.1}})


def test_nested_typo_names_the_section():
    with pytest.raises(ConfigError, match=r"unknown key 'lrr' in train; did you mean 'lr'\?"):
        load_config({"train": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"unknown key 'n_layer' in models.m.nets.pixelcnn; did you mean 'n_layers'"):
        load_config({"models": {"m": {"experiment": "class", "nets": {"pixelcnn": {"n_layer": 2}}}}})


def test_wrong_type_names_the_key_path():
    with pytest.raises(ConfigError, match=r"train\.lr: 'abc' is not of type 'number'"):
        load_config({"train": {"lr": "abc"}})
    with pytest.raises(ConfigError, match=r"models\.m\.experiment: 'clas' is not one of"):
        load_config({"models": {"m": {"experiment": "clas"}}})
    with pytest.raises(ConfigError, match=r"wandb\.mode"):
        load_config({"wandb": {"mode": "on"}})


def test_errors_from_a_file_name_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("run: x\ntrain:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"(?s)bad\.yaml.*train\.batch_size: 'many' is not of type 'integer'"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_model_overrides_stay_partial():
    cfg = load_config({"models": {"m": {"experiment": "class", "nets": {"c_dim": 8}}}})
    assert cfg["models"]["m"]["nets"] == {"c_dim": 8}
    assert cfg["models"]["m"]["objective"] == "vhe" and cfg["models"]["m"]["decoder"] == "deconv"


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_validate_and_list_all_models(profile):
    cfg = load_config(ROOT / profile)
    assert set(cfg["models"]) == ALL_MODELS
    assert cfg["run"] == {"config/config.yaml": "paper", "config/cpu.yaml": "cpu", "config/smoke.yaml": "smoke"}[profile]
    for name in cfg["models"]:
        m = model_config(cfg, name)["model"]
        assert m["nets"]["pixelcnn"]["n_layers"] >= 1 and m["train"]["max_steps"] >= 1
    raw = yaml.safe_load((ROOT / profile).read_text())
    assert set(raw["models"]) == ALL_MODELS


def test_model_config_merges_overrides():
    cfg = load_config({"nets": {"c_dim": 32},
                       "train": {"lr": 0.01},
                       "models": {"a": {"experiment": "class", "decoder": "pixelcnn",
                                        "nets": {"pixelcnn": {"n_layers": 2}}, "train": {"max_steps": 7}},
                                  "b": {"experiment": "vae"}}})
    mc = model_config(cfg, "a")
    m = mc["model"]
    assert m["name"] == "a" and m["experiment"] == "class" and m["objective"] == "vhe" and m["decoder"] == "pixelcnn"
    assert m["nets"]["c_dim"] == 32 and m["nets"]["pixelcnn"]["n_layers"] == 2
    assert m["nets"]["pixelcnn"]["channels"] == cfg["nets"]["pixelcnn"]["channels"]
    assert m["train"]["max_steps"] == 7 and m["train"]["lr"] == 0.01
    assert cfg["nets"]["pixelcnn"]["n_layers"] == 6 and "model" not in cfg  # input untouched
    assert set(mc["models"]) == {"a"}  # editing model b must not change a's file
    assert mc["evaluation"] == cfg["evaluation"] and mc["paths"] == cfg["paths"]
    assert load_config(mc) == mc  # self-contained and valid
    mb = model_config(cfg, "b")
    assert mb["model"]["train"]["max_steps"] == cfg["train"]["max_steps"]
    with pytest.raises(ConfigError, match="unknown model 'aa'"):
        model_config(cfg, "aa")


def test_per_model_json_unchanged_when_another_model_changes(tmp_path):
    base = {"models": {"a": {"experiment": "class"}, "b": {"experiment": "vae"}}}
    first = model_config(load_config(base), "a")
    base["models"]["b"]["train"] = {"lr": 0.5}
    assert model_config(load_config(base), "a") == first


def test_training_config_depends_on_textures_only_for_factorial():
    base = {"models": {"a": {"experiment": "class"}, "f": {"experiment": "factorial"}},
            "evaluation": {"n_samples": 3}}
    first = {m: training_config(load_config(base), m) for m in ("a", "f")}
    assert "evaluation" not in first["a"] and "textures" not in first["a"] and "textures" in first["f"]
    base["textures"] = {"n_per_character": 7}
    base["evaluation"] = {"n_samples": 9}
    assert training_config(load_config(base), "a") == first["a"]          # not retrained
    assert training_config(load_config(base), "f")["textures"]["n_per_character"] == 7


def test_dump_json_if_changed_keeps_mtime(tmp_path):
    p = tmp_path / "sub" / "m.json"
    obj = {"b": 1, "a": [1, 2]}
    assert dump_json_if_changed(obj, p) is True
    assert json.loads(p.read_text()) == obj
    os.utime(p, (1_000_000, 1_000_000))
    assert dump_json_if_changed({"a": [1, 2], "b": 1}, p) is False
    assert p.stat().st_mtime == 1_000_000
    assert dump_json_if_changed({"a": [1, 2], "b": 2}, p) is True
    assert p.stat().st_mtime != 1_000_000 and json.loads(p.read_text())["b"] == 2
    assert not [f for f in p.parent.iterdir() if f.name != "m.json"]  # no temporary files left


def test_schema_offers_exactly_the_library_estimators():
    """evaluation.estimators and the learning curve's method accept what vhe.evaluate.classify does."""
    from vhe.evaluate import CLASSIFY_METHODS

    ev = load_schema()["properties"]["evaluation"]["properties"]
    assert set(ev["estimators"]["items"]["enum"]) == set(CLASSIFY_METHODS)
    assert set(ev["estimators"]["default"]) == set(CLASSIFY_METHODS)
    assert load_config({"evaluation": {"estimators": ["symmetric"]}})["evaluation"]["estimators"] == ["symmetric"]
    with pytest.raises(ConfigError, match="estimators"):
        load_config({"evaluation": {"estimators": ["nearest"]}})
