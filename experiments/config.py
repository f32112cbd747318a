"""Configuration: one JSON schema (experiments/schema.json, package data), three profiles, per-model configs.

    cfg = load_config("config/smoke.yaml")       # defaults filled, paths filled, validated
    mcfg = model_config(cfg, "vhe_deconv")        # self-contained config of one model
    dump_json_if_changed(mcfg, "results/smoke/configs/vhe_deconv.json")

``load_config`` accepts a YAML or JSON file or a dict; a file may start from another profile in
its folder (``extends: cpu.yaml``, :data:`EXTENDS_KEY`). It fills every missing key with the
schema's ``default`` (recursively; the partial ``nets``/``train`` overrides inside a
``models`` entry are left partial), fills ``paths`` from ``run`` (``{run}`` in a path is
replaced by the run name), expands ``replicates`` (models trained again with other seeds:
extra ``models`` entries ``<model>_seed<k>``, :func:`expand_replicates`), and validates. Any
problem raises :class:`ConfigError`, whose
message names the key path, e.g. ``train.lr: 'abc' is not of type 'number'`` or
``unknown key 'trian' at top level; did you mean 'train'?``.

Inputs are bounded: a config whose values, with YAML aliases expanded, hold more than
:data:`MAX_CONFIG_NODES` nodes or nest deeper than :data:`MAX_CONFIG_DEPTH` is refused before
anything walks it, numbers must be finite (YAML's ``.nan``/``.inf`` are refused), and every
error message is cut to :data:`MAX_MESSAGE_CHARS` characters.

Settings that do not change results (:data:`RUNTIME_KEYS`: the device and W&B) are kept out of
the per-model files the pipeline writes (:func:`training_config`) and passed to the command-line
tools separately (``--runtime``, :func:`with_runtime`), so that changing them reruns nothing.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path

from vhe.files import atomic_write_text

__all__ = [
    "ConfigError",
    "SCHEMA_PATH",
    "load_schema",
    "load_config",
    "model_config",
    "deep_merge",
    "fill_defaults",
    "dump_json_if_changed",
    "MODEL_KEYS",
    "RUNTIME_KEYS",
    "runtime_settings",
    "with_runtime",
    "training_config",
    "read_config_file",
    "command_line_values",
    "without_inactive_settings",
    "config_json",
    "check_size",
    "MAX_CONFIG_NODES",
    "MAX_CONFIG_DEPTH",
    "expand_replicates",
    "replicate_name",
    "evaluation_for",
    "check_comparisons",
]

#: the schema, shipped inside the package (importlib.resources), so that an installed wheel validates too
SCHEMA_PATH = Path(str(resources.files("experiments").joinpath("schema.json")))
#: keys a `models` entry may carry besides nets/train
MODEL_KEYS = ("experiment", "objective", "decoder")
#: top-level keys that change how a job runs but not its results: kept out of the per-model files
RUNTIME_KEYS = ("device", "wandb")
#: bounds on a config's size, with YAML aliases expanded (the profiles hold a few hundred nodes)
MAX_CONFIG_NODES = 20_000
MAX_CONFIG_DEPTH = 32
MAX_MESSAGE_CHARS = 300


class ConfigError(ValueError):
    """A configuration is invalid; the message names the offending key path."""


@lru_cache(maxsize=4)
def _load_schema_cached(path: str) -> str:
    return Path(path).read_text()


def load_schema(path: str | os.PathLike | None = None) -> dict:
    """The JSON schema (a fresh copy)."""
    return json.loads(_load_schema_cached(str(path or SCHEMA_PATH)))


# ------------------------------------------------------------------ bounds
def check_size(data, origin: str = "config") -> None:
    """Refuse a config too large to walk safely, or holding a non-finite number.

    Counts nodes with YAML aliases expanded (an alias counts as often as it is used, so a
    200-byte "billion laughs" document is refused instead of expanding into gigabytes). Raises
    :class:`ConfigError` naming ``origin`` and, for a NaN/inf, the key path.
    """
    count = 0
    stack = [(data, ())]
    while stack:
        value, path = stack.pop()
        count += 1
        if count > MAX_CONFIG_NODES:
            raise ConfigError(
                f"{origin}: more than {MAX_CONFIG_NODES} values (YAML aliases expanded); refusing to read it"
            )
        if len(path) > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{origin}: nested deeper than {MAX_CONFIG_DEPTH} levels at {_where(path[:4])}...")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{origin}: {_where(path)}: {value} is not a finite number")
        if isinstance(value, Mapping):
            stack.extend((v, path + (str(k)[:40],)) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, path + (i,)) for i, v in enumerate(value))


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "... (cut)"


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
            msgs.append(_short(f"unknown key {str(key)[:60]!r} {where}{hint}"))
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
        if err.validator == "pattern" and "x-hint" in err.schema:
            message = f"{str(err.instance)[:80]!r} is not allowed: expected {err.schema['x-hint']}"
        else:
            message = err.message
        msgs.append(_short(f"{_where(tuple(err.absolute_path))}: {message}"))
    if msgs:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(dict.fromkeys(msgs)))


# ------------------------------------------------------------------ loading
#: a profile file may start from another profile in its folder: ``extends: cpu.yaml`` (its own keys
#: deep-merged over that file's, :func:`deep_merge`; lists and plain values replaced), resolved when the
#: file is read, so every reader (Snakemake's, ``vhe-estimate``, ``--config FILE``) sees the same config;
#: ``models: {name: null}`` in the extending file drops that model of the base profile
EXTENDS_KEY = "extends"
MAX_EXTENDS = 4
_EXTENDS_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.(yaml|yml|json)"


def _extend(data: dict, path: Path, chain: tuple) -> dict:
    """``data`` of the file ``path`` with its ``extends`` resolved (see :data:`EXTENDS_KEY`)."""
    base = data.get(EXTENDS_KEY)
    if EXTENDS_KEY not in data:
        return data
    if not isinstance(base, str) or re.fullmatch(_EXTENDS_NAME, base) is None:
        raise ConfigError(
            _short(
                f"{path}: {EXTENDS_KEY}: expected the file name of another profile in the same "
                f"folder (e.g. cpu.yaml), got {str(base)[:80]!r}"
            )
        )
    target = path.parent / base
    if target.resolve() in chain or len(chain) >= MAX_EXTENDS:
        raise ConfigError(_short(f"{path}: {EXTENDS_KEY}: {base} extends a loop or more than {MAX_EXTENDS} profiles"))
    parent = _read(target, chain)[0]
    own = {k: v for k, v in data.items() if k != EXTENDS_KEY}
    models = own.get("models")
    dropped = [name for name, entry in models.items() if entry is None] if isinstance(models, Mapping) else []
    merged = deep_merge(parent, own)
    for name in dropped:  # `name: null` under models: the extending profile does not train that model
        merged["models"].pop(name, None)
    return merged


def _read(path_or_dict, _chain: tuple = ()) -> tuple[dict, str]:
    if isinstance(path_or_dict, Mapping):
        check_size(path_or_dict, "config")
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
    check_size(data, str(path))
    data = _extend(data, path, _chain + (path.resolve(),))
    check_size(data, str(path))
    return data, str(path)


_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_WORDS = {"true": True, "false": False, "null": None, "none": None, "~": None}


def command_line_values(obj):
    """``obj`` with the text values a command line leaves inside nested settings read as YAML
    scalars: numbers, true/false and null (Snakemake hands ``--config train='{max_steps: 100}'``
    over as ``{"max_steps": "100"}``). Other text stays text; mappings and lists are walked."""
    if isinstance(obj, Mapping):
        return {k: command_line_values(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [command_line_values(v) for v in obj]
    if isinstance(obj, str):
        text = obj.strip()
        if text.lower() in _WORDS:
            return _WORDS[text.lower()]
        if _NUMBER.fullmatch(text):
            number = float(text)
            return int(text) if re.fullmatch(r"[-+]?[0-9]+", text) else number
    return obj


def read_config_file(path) -> dict:
    """The mapping a YAML/JSON config file holds, bounded (:func:`check_size`), with its ``extends``
    resolved (:data:`EXTENDS_KEY`), not validated."""
    return _read(path)[0]


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
    rep = cfg.get("replicates")
    if isinstance(rep, dict) and isinstance(rep.get("seeds"), list):  # Snakemake's --config gives nested
        rep["seeds"] = [
            int(s) if isinstance(s, str) and re.fullmatch(r"[0-9]{1,10}", s) else s  # values as text
            for s in rep["seeds"]
        ]
    run = cfg.get("run")
    run_ok = isinstance(run, str) and re.search(schema["properties"]["run"]["pattern"], run) is not None
    if isinstance(cfg.get("paths"), dict) and run_ok:  # a bad run name is reported once, as itself
        for key, value in list(cfg["paths"].items()):
            if isinstance(value, str) and "{run}" in value:
                cfg["paths"][key] = value.replace("{run}", run)
    try:
        _validate(cfg, schema)
        if expand_replicates(cfg, schema):
            _validate(cfg, schema)
        check_comparisons(cfg)
    except ConfigError as e:
        if origin != "dict":
            raise ConfigError(f"{origin}: {e}") from None
        raise
    return cfg


def replicate_name(model: str, seed: int) -> str:
    """The name of ``model`` trained again with ``seed``: ``<model>_seed<seed>``."""
    return f"{model}_seed{int(seed)}"


def expand_replicates(cfg: dict, schema: dict | None = None) -> bool:
    """Expand (and remove) the ``replicates`` section of a filled, validated ``cfg`` in place.

    Every model named in ``replicates.models`` gets, for each of ``replicates.seeds``, a
    ``models`` entry ``<model>_seed<k>``: a copy of its entry with ``seed: k`` and
    ``replicate_of: <model>``, after the other models (model by model, seed by seed). The models
    named keep their entries, so their per-model configs do not change. Idempotent (an entry that
    is already there unchanged is kept). True when an entry was added. Raises
    :class:`ConfigError` naming the ``replicates`` key at fault: an unknown model, a model that
    is itself a replicate, a seed that is the model's own, or a name that is taken or too long.
    """
    schema = load_schema() if schema is None else schema
    rep = cfg.pop("replicates", None)
    if not isinstance(rep, Mapping):
        return False
    names, seeds = list(rep.get("models") or []), list(rep.get("seeds") or [])
    models = cfg.get("models")
    if not names or not seeds or not isinstance(models, dict):
        return False
    pattern = schema["properties"]["models"]["propertyNames"]["pattern"]
    added = {}
    for i, base in enumerate(names):
        entry = models.get(base)
        if not isinstance(entry, Mapping):
            originals = [m for m, e in models.items() if not (isinstance(e, Mapping) and "replicate_of" in e)]
            close = difflib.get_close_matches(str(base), originals, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (models: {', '.join(originals)})"
            raise ConfigError(_short(f"replicates.models.{i}: {str(base)[:80]!r} is not a model{hint}"))
        if "replicate_of" in entry:
            raise ConfigError(
                _short(
                    f"replicates.models.{i}: {base!r} is itself a replicate (of "
                    f"{entry['replicate_of']!r}); name the model it replicates"
                )
            )
        own = int(entry.get("seed", cfg.get("seed", 0)))
        for j, seed in enumerate(seeds):
            if int(seed) == own:
                raise ConfigError(
                    f"replicates.seeds.{j}: {seed} is the seed {base!r} trains with already; "
                    f"a replicate needs another seed"
                )
            name = replicate_name(base, seed)
            if re.search(pattern, name) is None:
                raise ConfigError(
                    _short(
                        f"replicates.models.{i}: the replicate name {name!r} is not allowed "
                        f"(a model name has at most 64 letters, digits, '_' and '-')"
                    )
                )
            new = {**copy.deepcopy(dict(entry)), "seed": int(seed), "replicate_of": base}
            if name in models and models[name] != new:
                raise ConfigError(
                    _short(
                        f"replicates: {name!r} ({base!r} with seed {seed}) is already the name of "
                        f"another entry in models; rename that model"
                    )
                )
            if name not in models:
                added[name] = new
    models.update(added)
    return bool(added)


def check_comparisons(cfg: Mapping) -> None:
    """Refuse a ``models`` entry's ``compare_with`` that does not name a class-structured model
    (``experiment: class``) of ``cfg``, or that is set on a model that is not hierarchical (only
    those are compared with a class model: pipeline.outputs.comparison_model). Raises
    :class:`ConfigError` naming ``models.<name>.compare_with``, with the closest class model's name."""
    models = cfg.get("models")
    if not isinstance(models, Mapping):
        return
    classes = [m for m, e in models.items() if isinstance(e, Mapping) and e.get("experiment") == "class"]
    for name, entry in models.items():
        if not isinstance(entry, Mapping) or "compare_with" not in entry:
            continue
        other, key = entry["compare_with"], f"models.{name}.compare_with"
        if entry.get("experiment") != "hierarchical":
            raise ConfigError(
                _short(
                    f"{key}: only a hierarchical model is compared with a class-structured model, and "
                    f"{name!r} is a {entry.get('experiment')!r} model; remove the key"
                )
            )
        target = models.get(other)
        if not isinstance(target, Mapping):
            close = difflib.get_close_matches(str(other), classes, n=1)
            hint = (
                f"; did you mean {close[0]!r}?"
                if close
                else f" (class-structured models: {', '.join(classes) or 'none'})"
            )
            raise ConfigError(_short(f"{key}: {str(other)[:80]!r} is not a model{hint}"))
        if target.get("experiment") != "class":
            raise ConfigError(
                _short(
                    f"{key}: {other!r} is a {target.get('experiment')!r} model; name a class-structured "
                    f"model (experiment: class): {', '.join(classes) or 'the config has none'}"
                )
            )


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
    unchanged (and this model is not retrained). A model entry's ``seed`` (a replicate's:
    :func:`expand_replicates`) becomes the config's ``seed``, and its ``replicate_of`` is copied
    into ``model``. Its ``compare_with`` (which model the evaluation compares it with, naming
    another entry) is left out, so that setting it retrains nothing.
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
    if "replicate_of" in entry:
        merged["replicate_of"] = entry["replicate_of"]
    merged["nets"] = deep_merge(cfg["nets"], entry.get("nets"))
    merged["train"] = deep_merge(cfg["train"], entry.get("train"))
    if "seed" in entry:  # a replicate's (or the model's own) training seed
        cfg["seed"] = entry["seed"]
    cfg["models"] = {name: {k: copy.deepcopy(v) for k, v in models[name].items() if k != "compare_with"}}
    cfg["model"] = merged
    _validate(cfg, load_schema())
    return cfg


def without_inactive_settings(cfg: Mapping) -> dict:
    """``cfg`` (a copy) without the settings of a network family it does not use: ``nets.family``
    and ``nets.spatial`` are dropped (globally and in ``model.nets``) where the family is
    ``vector``, the default. A vector model's config and checkpoint fingerprint are then what they
    were before the spatial family existed, so adding it retrains nothing."""
    out = copy.deepcopy(dict(cfg))
    for nets in (out.get("nets"), (out.get("model") or {}).get("nets")):
        if isinstance(nets, dict) and nets.get("family", "vector") == "vector":
            nets.pop("family", None)
            nets.pop("spatial", None)
    return out


def training_config(cfg: Mapping, name: str) -> dict:
    """:func:`model_config` without the ``evaluation`` section: what training depends on.

    The pipeline writes this to results/<run>/configs/<name>.json and the evaluation section to
    configs/evaluation.json, so evaluation settings never trigger retraining. The ``textures``
    section is kept only for the factorial experiment (the only one that reads it), so changing
    the textured data retrains the factorial model alone.
    """
    out = without_inactive_settings(model_config(cfg, name))
    out.pop("evaluation", None)
    for key in RUNTIME_KEYS:
        out.pop(key, None)
    if out["model"].get("experiment") != "factorial":
        out.pop("textures", None)
    return out


def evaluation_for(cfg_or_evaluation: Mapping, decoder: str | None) -> dict:
    """The evaluation settings of a model with ``decoder``: the ``evaluation`` section (of a config,
    or the section itself) with ``evaluation.per_decoder[decoder]``'s non-null values in place of
    the section's, without ``per_decoder`` (a copy). The evaluators (``analysis.evaluate``,
    ``analysis.structured``) and the cost model (``pipeline.cost``) read their settings through it.

        evaluation_for({"evaluation": {"n_samples": 50, "per_decoder": {"pixelcnn": {"n_samples": 5}}}},
                       "pixelcnn")  # -> {"n_samples": 5}
    """
    ev = cfg_or_evaluation["evaluation"] if "evaluation" in cfg_or_evaluation else cfg_or_evaluation
    out = {k: copy.deepcopy(v) for k, v in ev.items() if k != "per_decoder"}
    overrides = (ev.get("per_decoder") or {}).get(decoder) or {}
    out.update({k: copy.deepcopy(v) for k, v in overrides.items() if v is not None})
    return out


def config_json(obj) -> str:
    """The canonical JSON text of a config (sorted keys, indented, trailing newline): what the
    pipeline writes to results/<run>/configs/ and compares to decide whether to rerun."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def runtime_settings(cfg: Mapping) -> dict:
    """The :data:`RUNTIME_KEYS` of a resolved config (``{"device": ..., "wandb": {...}}``)."""
    return {key: copy.deepcopy(cfg[key]) for key in RUNTIME_KEYS if key in cfg}


def with_runtime(cfg: Mapping, runtime) -> dict:
    """``cfg`` with the run settings ``runtime`` (a JSON object text or a dict holding only
    :data:`RUNTIME_KEYS`) applied on top, validated.

    The pipeline keeps the device and W&B settings out of the per-model files and hands them to
    every job as ``--runtime '<json>'``; ``None`` returns ``cfg`` unchanged (validated).
    """
    if runtime is None:
        return load_config(cfg)
    if isinstance(runtime, str):
        try:
            runtime = json.loads(runtime)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--runtime: not a JSON object: {e}") from None
    if not isinstance(runtime, Mapping):
        raise ConfigError(f"--runtime: expected a JSON object, got {type(runtime).__name__}")
    unknown = sorted(set(runtime) - set(RUNTIME_KEYS))
    if unknown:
        raise ConfigError(f"--runtime: only {', '.join(RUNTIME_KEYS)} may be set there, got {', '.join(unknown)}")
    merged = deep_merge(load_config(cfg), runtime)
    try:
        return load_config(merged)
    except ConfigError as e:
        raise ConfigError(f"--runtime: {e}") from None


def dump_json_if_changed(obj, path: str | os.PathLike) -> bool:
    """Write ``obj`` as indented JSON to ``path`` only if the content differs; True if written.

    An unchanged file keeps its mtime (so Snakemake does not rerun what depends on it). The
    write is atomic (temporary file + os.replace).
    """
    path = Path(path)
    text = config_json(obj)
    if path.is_file():
        try:
            if path.read_text() == text:
                return False
        except OSError:
            pass
    atomic_write_text(text, path)
    return True
