"""Configuration: one JSON schema (config/schema.json), three profiles, per-model configs.

    cfg = load_config("config/smoke.yaml")       # defaults filled, paths filled, validated
    mcfg = model_config(cfg, "vhe_deconv")        # self-contained config of one model
    dump_json_if_changed(mcfg, "results/smoke/configs/vhe_deconv.json")

``load_config`` accepts a YAML or JSON file or a dict. It fills every missing key with the
schema's ``default`` (recursively; the partial ``nets``/``train`` overrides inside a
``models`` entry are left partial), fills ``paths`` from ``run`` (``{run}`` in a path is
replaced by the run name), and validates. Any problem raises :class:`ConfigError`, whose
message names the key path, e.g. ``train.lr: 'abc' is not of type 'number'`` or
``unknown key 'trian' at top level; did you mean 'train'?``.
"""
from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from vhe.files import atomic_write_text

__all__ = ["ConfigError", "SCHEMA_PATH", "load_schema", "load_config", "model_config", "deep_merge",
           "fill_defaults", "dump_json_if_changed", "MODEL_KEYS"]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.json"
#: keys a `models` entry may carry besides nets/train
MODEL_KEYS = ("experiment", "objective", "decoder")


class ConfigError(ValueError):
    """A configuration is invalid; the message names the offending key path."""


@lru_cache(maxsize=4)
def _load_schema_cached(path: str) -> str:
    return Path(path).read_text()


def load_schema(path: str | os.PathLike | None = None) -> dict:
    """The JSON schema (a fresh copy)."""
    return json.loads(_load_schema_cached(str(path or SCHEMA_PATH)))


# ------------------------------------------------------------------ schema walking
def _resolve(schema: dict, root: dict) -> dict:
    """Follow a local ``$ref`` (``#/$defs/...``), merging sibling keywords over the target."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ConfigError(f"schema: only local $ref are supported, got {ref!r}")
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings}
        seen += 1
        if seen > 32:
            raise ConfigError(f"schema: $ref loop at {ref!r}")
    return schema


def _where(path: tuple) -> str:
    return "top level" if not path else ".".join(map(str, path))


def fill_defaults(instance, schema: dict, root: dict | None = None, _partial: bool = False):
    """Return ``instance`` with every missing property set to its schema ``default``.

    Recurses through ``properties`` (and ``additionalProperties`` schemas of maps) and
    ``$ref``. Inside a schema marked ``"x-partial": true`` nothing is filled (a partial
    override stays partial). Values of the wrong type are left alone for validation to report.
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    partial = _partial or bool(schema.get("x-partial"))
    if not isinstance(instance, dict):
        return instance
    out = dict(instance)
    props = schema.get("properties", {})
    for key, sub in props.items():
        sub_r = _resolve(sub, root)
        if key not in out and not partial and "default" in sub_r:
            out[key] = copy.deepcopy(sub_r["default"])
        if key in out:
            out[key] = fill_defaults(out[key], sub, root, partial)
    addl = schema.get("additionalProperties")
    if isinstance(addl, dict):
        for key in out:
            if key not in props:
                out[key] = fill_defaults(out[key], addl, root, partial)
    return out


def _unknown_keys(instance, schema: dict, root: dict, path: tuple = ()) -> list[str]:
    """Messages for keys not allowed by ``additionalProperties: false`` (with suggestions)."""
    schema = _resolve(schema, root)
    if not isinstance(instance, dict):
        return []
    msgs = []
    props = schema.get("properties", {})
    addl = schema.get("additionalProperties", True)
    for key, value in instance.items():
        if key in props:
            msgs += _unknown_keys(value, props[key], root, path + (key,))
        elif addl is False:
            close = difflib.get_close_matches(str(key), list(props), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {', '.join(sorted(props))}"
            where = "at top level" if not path else f"in {_where(path)}"
            msgs.append(f"unknown key {key!r} {where}{hint}")
        elif isinstance(addl, dict):
            msgs += _unknown_keys(value, addl, root, path + (key,))
    return msgs


def _validate(cfg: dict, schema: dict) -> None:
    import jsonschema

    msgs = _unknown_keys(cfg, schema, schema)
    validator = jsonschema.Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path]):
        if err.validator == "additionalProperties" and err.schema.get("additionalProperties") is False:
            continue  # reported above with a suggestion
        msgs.append(f"{_where(tuple(err.absolute_path))}: {err.message}")
    if msgs:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(dict.fromkeys(msgs)))


# ------------------------------------------------------------------ loading
def _read(path_or_dict) -> tuple[dict, str]:
    if isinstance(path_or_dict, Mapping):
        return copy.deepcopy(dict(path_or_dict)), "dict"
    path = Path(path_or_dict)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError
        raise ConfigError(f"cannot parse {path}: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data, str(path)


def load_config(path_or_dict, schema: dict | None = None, evaluation=None) -> dict:
    """Read a YAML/JSON config (or a dict), fill defaults and ``paths``, validate.

    ``evaluation`` (a path or a dict), when given, replaces the config's ``evaluation`` section:
    the pipeline keeps it in its own file (results/<run>/configs/evaluation.json) so that
    changing evaluation settings re-evaluates models without retraining them.
    Raises :class:`ConfigError` naming the key path of every problem.
    """
    data, origin = _read(path_or_dict)
    if evaluation is not None:
        data = dict(data)
        data["evaluation"] = _read(evaluation)[0]
    schema = load_schema() if schema is None else schema
    cfg = fill_defaults(data, schema)
    run = cfg.get("run")
    if isinstance(cfg.get("paths"), dict) and isinstance(run, str):
        for key, value in list(cfg["paths"].items()):
            if isinstance(value, str) and "{run}" in value:
                cfg["paths"][key] = value.replace("{run}", run)
    try:
        _validate(cfg, schema)
    except ConfigError as e:
        if origin != "dict":
            raise ConfigError(f"{origin}: {e}") from None
        raise
    return cfg


def deep_merge(base: Mapping, override: Mapping | None) -> dict:
    """``base`` updated with ``override``, recursively for nested mappings (copies, no aliasing)."""
    out = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def model_config(cfg: Mapping, name: str) -> dict:
    """The self-contained config of model ``name`` (what results/<run>/configs/<name>.json holds).

    The resolved ``cfg`` plus ``"model": {"name": name, experiment, objective, decoder,
    "nets": nets updated with the model's nets, "train": train updated with its train}``.
    ``models`` keeps only this model's entry, so editing another model leaves this file
    unchanged (and this model is not retrained).
    """
    cfg = load_config(cfg)
    models = cfg.get("models") or {}
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint} (models: {', '.join(models)})")
    entry = fill_defaults(dict(models[name]), load_schema()["$defs"]["model_entry"], load_schema())
    merged = {"name": name}
    for key in MODEL_KEYS:
        if key in entry:
            merged[key] = entry[key]
    merged["nets"] = deep_merge(cfg["nets"], entry.get("nets"))
    merged["train"] = deep_merge(cfg["train"], entry.get("train"))
    cfg["models"] = {name: copy.deepcopy(models[name])}
    cfg["model"] = merged
    _validate(cfg, load_schema())
    return cfg


def training_config(cfg: Mapping, name: str) -> dict:
    """:func:`model_config` without the ``evaluation`` section: what training depends on.

    The pipeline writes this to results/<run>/configs/<name>.json and the evaluation section to
    configs/evaluation.json, so evaluation settings never trigger retraining. The ``textures``
    section is kept only for the factorial experiment (the only one that reads it), so changing
    the textured data retrains the factorial model alone.
    """
    out = model_config(cfg, name)
    out.pop("evaluation", None)
    if out["model"].get("experiment") != "factorial":
        out.pop("textures", None)
    return out


def dump_json_if_changed(obj, path: str | os.PathLike) -> bool:
    """Write ``obj`` as indented JSON to ``path`` only if the content differs; True if written.

    An unchanged file keeps its mtime (so Snakemake does not rerun what depends on it). The
    write is atomic (temporary file + os.replace).
    """
    path = Path(path)
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    if path.is_file():
        try:
            if path.read_text() == text:
                return False
        except OSError:
            pass
    atomic_write_text(text, path)
    return True
