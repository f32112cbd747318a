"""Weights & Biases: the one place the project opens a run (offline by default, never an account).

Runs live in ``<paths.results>/wandb/`` (``wandb sync results/<run>/wandb/offline-run-*`` uploads
them later) and are tagged with the profile (``tags=[<run>]``). Per model, W&B group ``<run>/<model>``:

- the *training* run (``job_type="train"``, named ``<run>/<model>``; id random, kept in last.pt and
  ``train_summary.json``, so that a resumed training session continues it at its own step). When
  training finishes its ``best.pt`` is logged as the model artifact ``<run>-<model>`` (type
  ``model``, aliases ``best``, ``final`` and W&B's ``latest``; the training summary's numbers as
  metadata): :func:`log_model`;
- the *evaluation* run (``job_type="eval"``, named ``<run>/<model>/eval``, id ``<training id>-eval``):
  a run of its own, never a resumed training run. Its metrics are summary values (set again by
  every session) and one history row at the checkpoint's training step: :func:`log_evaluation`.

The profile's summary page is the run ``<run>/summary`` (group ``<run>/summary``,
``job_type="summary"``) with an id derived from the results folder and the run name
(:func:`summary_run_id`), resumed with ``resume="allow"``: rerunning the summary updates that run.

Logging never stops a job: a W&B error is a warning and the run is dropped. A wandb older than
:data:`MIN_WANDB` (or none) while ``wandb.mode`` is on is logged as an error that names the fix
(:func:`wandb_problem`; ``scripts/check_outputs.py --wandb`` fails on it).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import math
import re
import struct
import uuid
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("experiments.tracking")

__all__ = [
    "MIN_WANDB",
    "METRIC_COLUMNS",
    "enabled",
    "wandb_problem",
    "new_run_id",
    "stable_id",
    "group_name",
    "model_artifact_name",
    "eval_run_id",
    "summary_run_id",
    "open_run",
    "log_summary",
    "log_images",
    "log_tables",
    "log_model",
    "finish",
    "log_evaluation",
    "training_summary",
    "training_run_id",
    "offline_runs",
    "offline_records",
    "missing_tracking",
]

#: The oldest wandb this module works with: ``reinit="finish_previous"`` (wandb 0.19.9; 0.19.8's
#: ``reinit`` is a bool and rejects the string, so ``wandb.init`` fails). Also in pyproject.toml.
MIN_WANDB = (0, 19, 9)
#: the columns of a metric row (:func:`log_evaluation`'s ``rows``): one number each, as
#: ``analysis.metric_rows`` reads them from a metrics JSON and ``paper_figures.metrics`` tabulates them
METRIC_COLUMNS = [
    "model",
    "experiment",
    "objective",
    "decoder",
    "metric",
    "set",
    "estimator",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "K",
    "unit",
    "steps",
    "git_commit",
]
_warned: set[str] = set()


def enabled(cfg: Mapping) -> bool:
    """Whether ``cfg`` logs to W&B at all (``wandb.mode`` is not disabled)."""
    return (cfg.get("wandb") or {}).get("mode", "disabled") != "disabled"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3])


def wandb_problem() -> str | None:
    """Why W&B logging cannot work here (wandb missing, or older than :data:`MIN_WANDB`), or None."""
    floor = ".".join(map(str, MIN_WANDB))
    fix = f"install it with  pip install 'wandb>={floor}'  or set  wandb: {{mode: disabled}}"
    try:
        import wandb
    except ImportError as e:
        return f"wandb is not installed ({e}); {fix}"
    version = str(getattr(wandb, "__version__", "0"))
    if _version(version) < MIN_WANDB:
        return f"wandb {version} is older than {floor}, the oldest this project logs with; {fix}"
    return None


def _say_problem(problem: str, what: str) -> None:
    """A problem with wandb itself: an error-level line once per process (then warnings)."""
    if problem in _warned:
        log.warning("W&B off for %s: %s", what, problem)
        return
    _warned.add(problem)
    log.error("W&B is on (wandb.mode) but nothing is logged: %s", problem)


def new_run_id() -> str:
    """A fresh 8-character run id."""
    return uuid.uuid4().hex[:8]


def stable_id(*parts) -> str:
    """A 12-character run id that depends only on ``parts`` (the same id on every rerun)."""
    return hashlib.sha1("\0".join(str(p) for p in parts).encode()).hexdigest()[:12]


def group_name(cfg: Mapping, name: str) -> str:
    """The W&B group of a model's runs (training, evaluation): ``<run>/<model>``."""
    return f"{cfg['run']}/{name}"


def model_artifact_name(cfg: Mapping, name: str) -> str:
    """The model artifact of ``name``: ``<run>-<model>`` (W&B's name characters only)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{cfg['run']}-{name}")


def _results(cfg: Mapping) -> Path:
    return Path(cfg["paths"]["results"])


def eval_run_id(cfg: Mapping, name: str, training_id: str | None) -> str:
    """The evaluation run's id: ``<training id>-eval`` (one per training run; re-evaluating updates
    it), or, for an untracked training, one derived from the results folder, run and model."""
    if training_id:
        return f"{training_id}-eval"
    return stable_id(_results(cfg).resolve(), cfg["run"], name, "eval")


def summary_run_id(cfg: Mapping) -> str:
    """The summary run's id: derived from the results folder and the run name, so that every
    rerun of the summary resumes the same run instead of adding one."""
    return stable_id(_results(cfg).resolve(), cfg["run"], "summary")


def open_run(
    cfg: Mapping,
    name: str,
    *,
    job_type: str,
    run_id: str | None = None,
    config: Mapping | None = None,
    group: str | None = None,
    display_name: str | None = None,
):
    """Open the W&B run of ``name`` (a model, or ``summary``), resuming ``run_id`` when that run exists.

    ``cfg`` is a resolved config (its ``wandb`` section, ``run`` and ``paths.results``). The run is
    named ``display_name`` (default ``<run>/<name>``), grouped in ``group`` (default
    :func:`group_name`) and tagged with the profile. Returns the run, or None when ``wandb.mode`` is
    disabled, wandb is missing or too old (said as an error, :func:`wandb_problem`) or fails to start.
    """
    if not enabled(cfg):
        return None
    problem = wandb_problem()
    if problem:
        _say_problem(problem, name)
        return None
    settings = cfg["wandb"]
    try:
        import wandb

        # W&B writes <results>/wandb/offline-run-*; absolute, since W&B's service process (shared by
        # the runs of one process) resolves a relative dir against its own working directory
        wdir = _results(cfg).resolve()
        wdir.mkdir(parents=True, exist_ok=True)
        return wandb.init(
            mode=settings["mode"],
            project=settings.get("project"),
            entity=settings.get("entity"),
            name=display_name or f"{cfg['run']}/{name}",
            group=group or group_name(cfg, name),
            job_type=job_type,
            tags=[str(cfg["run"])],
            config=dict(config) if config is not None else None,
            dir=str(wdir),
            id=run_id or new_run_id(),
            resume="allow",
            reinit="finish_previous",
        )
    except Exception as e:  # noqa: BLE001 - logging must never stop a job
        log.warning("W&B disabled for %s: %s: %s", name, type(e).__name__, e)
        return None


def _guard(run, what: str, fn) -> bool:
    if run is None:
        return False
    try:
        fn()
        return True
    except Exception as e:  # noqa: BLE001
        log.warning("W&B %s failed: %s: %s", what, type(e).__name__, e)
        return False


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and not math.isfinite(v))


def log_summary(run, values: Mapping) -> bool:
    """Set summary values (numbers, strings, W&B media; None and non-finite numbers are skipped)."""

    def go():
        for k, v in values.items():
            if _finite(v):
                run.summary[k] = v

    return _guard(run, "summary", go)


def _table(df):
    import wandb

    return wandb.Table(dataframe=df.astype(object).where(df.notna(), None))


def _images(images: Mapping) -> dict:
    import wandb

    return {k: wandb.Image(str(p), caption=Path(p).name) for k, p in images.items() if Path(p).is_file()}


def log_tables(run, tables: Mapping) -> bool:
    """Log pandas DataFrames as ``wandb.Table`` s under their keys."""
    return _guard(run, "tables", lambda: run.log({k: _table(df) for k, df in tables.items()}))


def log_images(run, images: Mapping) -> bool:
    """Log image files (PNG paths) as ``wandb.Image`` s under their keys; missing files are skipped."""
    return _guard(run, "images", lambda: run.log(_images(images)))


def _metadata(summary: Mapping) -> dict:
    """The training summary's numbers and strings (and dicts of numbers, e.g. KL per latent) as
    JSON-safe artifact metadata; None and non-finite numbers are left out."""
    out = {}
    for k, v in summary.items():
        if isinstance(v, Mapping):
            v = {a: b for a, b in v.items() if isinstance(b, (int, float)) and _finite(b)}
            if v:
                out[k] = v
        elif isinstance(v, (bool, int, float, str)) and _finite(v):
            out[k] = v
    return out


def log_model(run, checkpoint, cfg: Mapping, name: str, summary: Mapping, aliases=("best", "final")) -> bool:
    """Log ``checkpoint`` (the finished training's best.pt) as the model artifact ``<run>-<model>``
    (type ``model``; ``aliases`` and W&B's own ``latest``) with the training summary as metadata.
    Offline, W&B keeps a copy of the file in its staging folder (``WANDB_DATA_DIR``) until
    ``wandb sync`` uploads it."""

    def go():
        import wandb

        art = wandb.Artifact(
            model_artifact_name(cfg, name),
            type="model",
            metadata=_metadata(summary),
            description=f"{cfg['run']}/{name}: best.pt (best validation bound) of its training",
        )
        art.add_file(str(checkpoint), name=Path(checkpoint).name)
        run.log_artifact(art, aliases=list(aliases))

    return _guard(run, "model artifact", go)


def finish(run, exit_code: int = 0) -> None:
    _guard(run, "finish", lambda: run.finish(exit_code=exit_code))


def training_summary(checkpoint) -> dict:
    """The train_summary.json of ``checkpoint``'s training (beside it, or one folder up for the
    pipeline's checkpoints/<model>/final/best.pt), or {}."""
    for folder in (Path(checkpoint).parent, Path(checkpoint).parent.parent):
        try:
            data = json.loads((folder / "train_summary.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


def training_run_id(checkpoint) -> str | None:
    """The W&B run id the trainer stored in the train_summary.json of ``checkpoint``'s run, or None."""
    return training_summary(checkpoint).get("wandb_id")


def log_evaluation(cfg: Mapping, name: str, checkpoint, rows, images: Mapping) -> bool:
    """Log one model's evaluation as its own run (``job_type="eval"``, in the group of its training
    run, id :func:`eval_run_id`, resumed when it exists: re-evaluating updates it).

    Every metric row becomes the summary value ``eval/<metric>[/<set>][/<estimator>]``; the rows
    the table ``eval/metrics``, the accuracy rows ``eval/classification`` and ``images`` (key -> PNG
    path) ``wandb.Image`` s, all set as summary values too. The same keys are one history row at an
    explicit step, the checkpoint's training step (``best_step``; 0 when unknown), so W&B draws them
    against training's x axis. ``rows``: rows (dicts or a DataFrame) with the columns
    :data:`METRIC_COLUMNS` (``analysis.metric_rows``)."""
    if not enabled(cfg):
        return False
    import pandas as pd

    rows = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=METRIC_COLUMNS)
    trained = training_summary(checkpoint)
    training_id = trained.get("wandb_id")
    step = trained.get("best_step") if isinstance(trained.get("best_step"), int) else 0
    config = {
        **dict(cfg),
        "evaluated": {"checkpoint": str(checkpoint), "training_run_id": training_id, "checkpoint_step": step},
    }
    run = open_run(
        cfg,
        name,
        job_type="eval",
        run_id=eval_run_id(cfg, name, training_id),
        config=config,
        display_name=f"{cfg['run']}/{name}/eval",
    )
    if run is None:
        return False
    metrics = {}
    for _, r in rows.iterrows():
        key = "/".join(str(p) for p in ("eval", r["metric"], r["set"], r["estimator"]) if p is not None and p == p)
        value = r["value"]
        metrics[key] = float(value) if value is not None and value == value else None
    tables = {"eval/metrics": rows}
    acc = rows[rows["metric"] == "accuracy"]
    if not acc.empty:
        tables["eval/classification"] = acc[["set", "estimator", "value", "ci_low", "ci_high", "n", "K"]]

    def go():
        media = {**{k: _table(df) for k, df in tables.items()}, **_images(images)}
        values = {k: v for k, v in {**metrics, **media}.items() if _finite(v)}
        # a resumed (online) run refuses a step below its last one: log there instead
        at = max(step, int(getattr(run, "starting_step", 0) or 0)) if getattr(run, "resumed", False) else step
        run.log(values, step=at)
        for k, v in values.items():  # explicit: the summary holds them even if W&B drops the row
            run.summary[k] = v
        run.summary["eval/checkpoint_step"] = step

    ok = _guard(run, "evaluation", go)
    finish(run)
    return ok


# ----------------------------------------------------------------------------- offline run files
# run-<id>.wandb: a 7-byte header (":W&B", magic, version), then LevelDB log-format records
# (32 KiB blocks; each chunk: crc32 (4 bytes), length (2, little endian), type (1): full, first,
# middle, last) whose payloads are wandb_internal_pb2.Record protobufs.
BLOCK = 32768
#: fields of a logged table or image in the history (besides ``_type``)
MEDIA_FIELDS = {
    "artifact_path",
    "log_mode",
    "ncols",
    "nrows",
    "path",
    "sha256",
    "size",
    "format",
    "height",
    "width",
    "caption",
    "_latest_artifact_path",
}
HEADER = 7


def offline_records(path) -> list:
    """Every protobuf Record of one .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    pos, out, parts = HEADER, [], []
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        parts.append(chunk)
        if kind in (1, 4):  # full or last
            r = pb.Record()
            r.ParseFromString(b"".join(parts))
            out.append(r)
            parts = []
    return out


def offline_runs(wandb_dir) -> list[dict]:
    """One dict per offline run folder (session): id, job_type, group, name, tags, summary
    {key: value}, the history's scalar keys and ``steps``, its media {key: type} (``table-file``,
    ``image-file``; logged in the history or set as summary values), the ``artifacts`` it logged
    ({name, type, aliases, metadata}) and ``exited`` (whether the session's exit record has been
    written: False for a session still running, or one whose file W&B's service has not finished
    writing)."""
    out = []

    def session_order(f):  # offline-run-<date>_<time>-<id>[-<n>]: a resumed session gets -1, -2, ...
        folder = Path(f).parent.name
        stamp, rest = folder[len("offline-run-") :].split("-", 1)
        resumed = rest.rsplit("-", 1)[1] if rest.count("-") else "0"
        return stamp, int(resumed) if resumed.isdigit() else 0

    for f in sorted(glob.glob(str(Path(wandb_dir) / "offline-run-*" / "run-*.wandb")), key=session_order):
        info = {
            "file": f,
            "summary": {},
            "history_keys": set(),
            "steps": [],
            "media": {},
            "artifacts": [],
            "tags": [],
            "exited": False,
        }
        for r in offline_records(f):
            kind = r.WhichOneof("record_type")
            if kind == "exit":
                info["exited"] = True
            elif kind == "run":
                info.update(
                    id=r.run.run_id,
                    job_type=r.run.job_type,
                    group=r.run.run_group,
                    name=r.run.display_name,
                    tags=list(r.run.tags),
                )
            elif kind == "artifact":
                a = r.artifact
                info["artifacts"].append(
                    {
                        "name": a.name,
                        "type": a.type,
                        "aliases": list(a.aliases),
                        "metadata": json.loads(a.metadata) if a.metadata else {},
                    }
                )
            elif kind == "summary":
                for u in r.summary.update:
                    key = u.key or "/".join(u.nested_key)
                    value = info["summary"][key] = json.loads(u.value_json)
                    if isinstance(value, dict) and "_type" in value and not key.startswith("_"):
                        info["media"][key] = value["_type"]
            elif kind == "history":  # media (tables, images) arrive as <key>/_type, <key>/path, ...
                for i in r.history.item:
                    key = i.key or "/".join(i.nested_key)
                    if key == "_step":
                        info["steps"].append(json.loads(i.value_json))
                    elif key.endswith("/_type"):
                        info["media"][key[: -len("/_type")]] = json.loads(i.value_json)
                    elif "/_" not in key and not key.rsplit("/", 1)[-1] in MEDIA_FIELDS and not key.startswith("_"):
                        info["history_keys"].add(key)
        out.append(info)
    return out


def missing_tracking(wandb_dir, run: str, models) -> list[str]:
    """What an offline run's W&B files lack. For every model, in the group ``<run>/<model>``: a
    training run (``job_type="train"``) with history, its model artifact ``<run>-<model>`` (type
    ``model``, alias ``best``) and an evaluation run (``job_type="eval"``) with ``eval/`` summary
    values; and the ``<run>/summary`` run with tables. Returns one line per gap ([] when complete)."""
    found = offline_runs(wandb_dir)
    gaps = []
    for m in models:
        group = f"{run}/{m}"
        mine = [r for r in found if r.get("group") == group]
        train = [r for r in mine if r.get("job_type") == "train"]
        if not any(r["history_keys"] for r in train):
            gaps.append(f"{group}: no training run with history (job_type train)")
        artifact = model_artifact_name({"run": run}, m)
        if not any(
            a["type"] == "model" and a["name"] == artifact and "best" in a["aliases"]
            for r in train
            for a in r["artifacts"]
        ):
            gaps.append(f"{group}: no model artifact {artifact} (type model, alias best) logged by its training run")
        if not any(r.get("job_type") == "eval" and any(k.startswith("eval/") for k in r["summary"]) for r in mine):
            gaps.append(f"{group}: no evaluation run (job_type eval) with eval/* summary values")
    if not any(r.get("name") == f"{run}/summary" and r["media"] for r in found):
        gaps.append(f"{run}/summary: no summary run with tables")
    return gaps
