"""analysis.baselines end to end on a tiny synthetic all_runs.zip and its prepared 28x28 runs."""

import json

import pytest
import torch

from analysis import baselines as bl
from tests.vhe.data.helpers import bar_png, runs_zip
from vhe.data.runs import load_lake_runs, load_runs, save_runs

KEYS = ("pixel_nn_28", "mhd_28", "pixel_nn_105", "mhd_105")


def _two_runs_zip(path):
    """run01 (3-way, tests/vhe/data/helpers.runs_zip) + run02 (2-way) in Lake's layout."""
    extra = {
        "run02/training/class01.png": bar_png(5),
        "run02/training/class02.png": bar_png(9),
        "run02/test/item01.png": bar_png(2),
        "run02/test/item02.png": bar_png(7),
        "run02/class_labels.txt": "run02/test/item01.png run02/training/class02.png\n"
        "run02/test/item02.png run02/training/class01.png\n",
    }
    return runs_zip(path, extra=extra)


@pytest.fixture
def files(tmp_path):
    z = _two_runs_zip(tmp_path / "all_runs.zip")
    runs = load_lake_runs(z)  # 28x28, as `vhe.data.cli prepare-runs` writes them
    save_runs(runs[::-1], tmp_path / "lake_runs.pt")  # stored out of order: name order is what counts
    return z, tmp_path / "lake_runs.pt"


def _run(tmp_path, z, runs, *extra):
    out = tmp_path / "metrics" / "baselines.json"
    rc = bl.main(["--runs-28", str(runs), "--zip", str(z), "--out", str(out), *extra])
    return rc, out


def test_cli_writes_documented_keys(tmp_path, files, capsys):
    z, runs = files
    rc, out = _run(tmp_path, z, runs)
    assert rc == 0
    d = json.loads(out.read_text())
    assert set(d) == {"lake_runs", "definitions", "provenance", "eval_seconds"}
    assert tuple(d["lake_runs"]) == KEYS and tuple(d["definitions"]) == KEYS
    assert all(isinstance(v, str) and v for v in d["definitions"].values())
    answers = torch.cat([r.answer for r in sorted(load_runs(runs), key=lambda r: r.name)])
    for key, s in d["lake_runs"].items():
        method, res = key.rsplit("_", 1)
        assert s["method"] == method and s["resolution"] == int(res)
        assert s["n_trials"] == 5 and s["n_runs"] == 2 and len(s["per_trial"]) == 5
        assert set(s["per_trial"]) <= {0, 1} and sum(s["per_trial"]) == s["correct"]
        assert s["accuracy"] == pytest.approx(s["correct"] / 5)
        assert [u["name"] for u in s["runs"]] == ["run01", "run02"]
        assert [u["n_queries"] for u in s["runs"]] == [3, 2]
        assert sum(u["correct"] for u in s["runs"]) == s["correct"]
        assert all(set(u) >= {"name", "n_queries", "correct", "accuracy"} for u in s["runs"])
        assert "ci95" in s and "ci95_wilson" in s and "ci_method" in s
    # the synthetic bars differ only by a vertical shift: centred MHD 0 to every support -> support 0
    mhd = d["lake_runs"]["mhd_105"]["per_trial"]
    assert mhd == (answers == 0).long().tolist()
    assert d["provenance"]["git_commit"] and d["eval_seconds"]["total"] >= 0
    assert "mhd_105" in capsys.readouterr().out


def test_cli_max_runs_takes_the_first_runs_by_name(tmp_path, files):
    z, runs = files
    rc, out = _run(tmp_path, z, runs, "--max-runs", "1")
    assert rc == 0
    for s in json.loads(out.read_text())["lake_runs"].values():
        assert [u["name"] for u in s["runs"]] == ["run01"] and s["n_trials"] == 3 and len(s["per_trial"]) == 3


def test_cli_mismatched_runs_are_an_error(tmp_path, files, capsys):
    z, runs_file = files
    # answers differ
    bad = load_runs(runs_file)
    r1 = next(r for r in bad if r.name == "run01")
    r1.answer = r1.answer.flip(0)
    save_runs(bad, tmp_path / "bad_answers.pt")
    rc, out = _run(tmp_path, z, tmp_path / "bad_answers.pt")
    assert rc == 2 and not out.exists()
    assert "run01" in capsys.readouterr().err
    with pytest.raises(bl.RunMismatchError, match="differ in their trials"):
        bl.baselines(load_runs(tmp_path / "bad_answers.pt"), load_lake_runs(z, size=105))
    # other runs
    save_runs([r for r in load_runs(runs_file) if r.name == "run02"], tmp_path / "only02.pt")
    rc, out = _run(tmp_path, z, tmp_path / "only02.pt")
    assert rc == 2 and not out.exists()
    assert "different runs" in capsys.readouterr().err
    # but the first run alone matches with --max-runs 1 only if it is run01
    rc, _ = _run(tmp_path, z, tmp_path / "only02.pt", "--max-runs", "1")
    assert rc == 2
