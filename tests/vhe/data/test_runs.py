"""vhe.data.runs: Lake's official one-shot runs and in-distribution within-alphabet runs."""

import zipfile

import numpy as np
import pytest
import torch

from vhe.data import cli
from vhe.data.fetch import DataIntegrityError
from vhe.data.readers import load_npz_arrays
from vhe.data.runs import OneShotRun, load_lake_runs, load_runs, save_runs, within_alphabet_runs
from vhe.data.transforms import center_ink

from .helpers import bar_png, files_under, png_declaring, runs_zip
from .mirror import MIRROR

_SKIP = f"Omniglot data mirror not found at {MIRROR} (set VHE_DATA_MIRROR)"


@pytest.fixture(scope="module")
def evaluation():
    if not (MIRROR / "test_small.npz").is_file():
        pytest.skip(_SKIP)
    return load_npz_arrays(MIRROR / "test_small.npz")


@pytest.fixture(scope="module")
def lake_runs():
    if not (MIRROR / "all_runs.zip").is_file():
        pytest.skip(_SKIP)
    return load_lake_runs(MIRROR / "all_runs.zip")


def _is_perm(t: torch.Tensor, n: int) -> bool:
    return sorted(t.tolist()) == list(range(n))


# --------------------------------------------------------------------------- Lake's runs
def test_lake_runs_structure(lake_runs):
    assert len(lake_runs) == 20
    assert [r.name for r in lake_runs] == [f"run{i:02d}" for i in range(1, 21)]
    for r in lake_runs:
        assert r.support.shape == (20, 1, 28, 28) and r.query.shape == (20, 1, 28, 28)
        assert r.support.dtype == torch.uint8 and set(r.support.unique().tolist()) == {0, 1}
        assert r.answer.dtype == torch.int64 and _is_perm(r.answer, 20)
        assert 0.03 < r.support.float().mean() < 0.2  # ink = 1 is the minority
    # run01/class_labels.txt line 1: run01/test/item01.png run01/training/class08.png
    r = lake_runs[0]
    assert r.query_files[0] == "run01/test/item01.png" and r.support_files[7] == "run01/training/class08.png"
    assert int(r.answer[0]) == 7


def test_lake_runs_equal_evaluation_arrays(lake_runs, evaluation):
    """Every run image is an evaluation-array image (same preprocessing); each run is one alphabet and the
    answers pair images of the same character."""
    flat = evaluation.images.flatten(1).numpy()
    where = {np.packbits(row).tobytes(): i for i, row in enumerate(flat)}
    for r in lake_runs:
        s_idx = [where.get(np.packbits(x).tobytes()) for x in r.support.flatten(1).numpy()]
        q_idx = [where.get(np.packbits(x).tobytes()) for x in r.query.flatten(1).numpy()]
        assert None not in s_idx and None not in q_idx, r.name
        s_char = evaluation.character[s_idx]
        q_char = evaluation.character[q_idx]
        assert len(set(s_char.tolist())) == 20
        assert torch.equal(q_char, s_char[r.answer]), r.name
        assert len(set(evaluation.alphabet[s_idx + q_idx].tolist())) == 1, r.name


def test_save_load_runs(tmp_path, lake_runs):
    p = save_runs(lake_runs[:3], tmp_path / "r" / "runs.pt")
    d = torch.load(p, weights_only=True)
    assert d["format"] == "vhe.OneShotRuns" and len(d["runs"]) == 3
    back = load_runs(p)
    assert [r.name for r in back] == ["run01", "run02", "run03"]
    assert torch.equal(back[1].query, lake_runs[1].query) and torch.equal(back[1].answer, lake_runs[1].answer)
    torch.save({"format": "x"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a saved list"):
        load_runs(tmp_path / "bad.pt")


def test_lake_runs_synthetic(tmp_path):
    runs = load_lake_runs(runs_zip(tmp_path / "r.zip"))
    assert len(runs) == 1 and runs[0].answer.tolist() == [1, 2, 0] and runs[0].n_way == 3


def test_lake_runs_errors(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataIntegrityError, match="bad.zip"):
        load_lake_runs(bad)
    good = runs_zip(tmp_path / "g.zip")
    trunc = tmp_path / "trunc.zip"
    trunc.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(DataIntegrityError, match="trunc.zip"):
        load_lake_runs(trunc)
    with zipfile.ZipFile(tmp_path / "nolabels.zip", "w") as z:
        z.writestr("run01/training/class01.png", bar_png(0))
    with pytest.raises(ValueError, match="class_labels.txt"):
        load_lake_runs(tmp_path / "nolabels.zip")
    p = runs_zip(
        tmp_path / "missing.zip",
        labels=[
            "run01/test/item01.png run01/training/class09.png",
            "run01/test/item02.png run01/training/class01.png",
            "run01/test/item03.png run01/training/class02.png",
        ],
    )
    with pytest.raises(ValueError, match="class09.png"):
        load_lake_runs(p)
    p = runs_zip(tmp_path / "malformed.zip", labels=["run01/test/item01.png"])
    with pytest.raises(ValueError, match="line 1"):
        load_lake_runs(p)
    p = runs_zip(
        tmp_path / "corrupt.zip",
        extra={"run01/training/class04.png": b"garbage"},
        labels=[f"run01/test/item{i + 1:02d}.png run01/training/class04.png" for i in range(3)],
    )
    with pytest.raises(DataIntegrityError, match="class04.png"):
        load_lake_runs(p)


# --------------------------------------------------------------------------- within-alphabet runs
def test_within_alphabet_runs(evaluation):
    runs = within_alphabet_runs(evaluation, n_runs=20, n_way=20, seed=0)
    assert len(runs) == 20
    eligible = sum(int((evaluation.character_alphabet() == a).sum()) >= 20 for a in range(evaluation.n_alphabets))
    assert len({r.alphabet for r in runs}) == min(20, eligible)  # cycles through the alphabets
    for r in runs:
        assert r.support.shape == (20, 1, 28, 28) and r.query.shape == (20, 1, 28, 28)
        assert _is_perm(r.answer, 20)
        s_i, q_i = r.support_index, r.query_index
        alph = set(evaluation.alphabet[torch.cat([s_i, q_i])].tolist())
        assert alph == {evaluation.alphabet_names.index(r.alphabet)}  # one alphabet per run
        assert len(set(evaluation.character[s_i].tolist())) == 20
        assert torch.equal(evaluation.character[q_i], evaluation.character[s_i][r.answer])
        ds, dq = set(evaluation.drawer[s_i].tolist()), set(evaluation.drawer[q_i].tolist())
        assert len(ds) == 1 and len(dq) == 1 and ds != dq  # drawer A for support, B for query
        assert torch.equal(r.support, evaluation.images[s_i])
    again = within_alphabet_runs(evaluation, n_runs=20, n_way=20, seed=0)
    assert all(torch.equal(a.query_index, b.query_index) for a, b in zip(runs, again))
    other = within_alphabet_runs(evaluation, n_runs=20, n_way=20, seed=1)
    assert any(not torch.equal(a.support_index, b.support_index) for a, b in zip(runs, other))


def test_within_alphabet_runs_errors(evaluation):
    with pytest.raises(ValueError, match="no alphabet has >= 60 characters"):
        within_alphabet_runs(evaluation, n_way=60)
    small = evaluation.first_characters(10)
    runs = within_alphabet_runs(small, n_runs=3, n_way=10)
    assert len(runs) == 3 and all(r.alphabet == "Angelic" for r in runs)


def test_cli_runs(tmp_path, evaluation):
    ev = evaluation.first_characters(30).save(tmp_path / "ev.pt")
    out = tmp_path / "w.pt"
    assert (
        cli.main(
            [
                "within-alphabet-runs",
                "--set",
                str(ev),
                "--out",
                str(out),
                "--n-runs",
                "4",
                "--n-way",
                "5",
                "--seed",
                "2",
            ]
        )
        == 0
    )
    runs = load_runs(out)
    assert len(runs) == 4 and runs[0].n_way == 5 and isinstance(runs[0], OneShotRun)
    assert cli.main(["prepare-runs", "--zip", str(MIRROR / "all_runs.zip"), "--out", str(tmp_path / "l.pt")]) == 0
    plain = load_runs(tmp_path / "l.pt")
    assert len(plain) == 20
    assert (
        cli.main(
            ["prepare-runs", "--zip", str(MIRROR / "all_runs.zip"), "--out", str(tmp_path / "c.pt"), "--center-ink"]
        )
        == 0
    )
    centred = load_runs(tmp_path / "c.pt")
    for p, c in zip(plain, centred):
        assert torch.equal(c.support, center_ink(p.support)) and torch.equal(c.query, center_ink(p.query))
        assert torch.equal(c.answer, p.answer) and c.support_files == p.support_files


# --------------------------------------------------------------------------- hostile archives (size limits)
def test_lake_runs_png_declaring_a_huge_size_is_refused_and_nothing_written(tmp_path, monkeypatch, capsys):
    p = runs_zip(
        tmp_path / "huge.zip",
        extra={"run01/training/class04.png": png_declaring(30000, 30000)},
        labels=[f"run01/test/item{i + 1:02d}.png run01/training/class04.png" for i in range(3)],
    )
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    assert cli.main(["prepare-runs", "--zip", str(p), "--out", str(tmp_path / "out" / "runs.pt")]) == 1
    err = capsys.readouterr().err
    assert "huge.zip: member 'run01/training/class04.png' is not a decodable PNG (DecompressionBombError" in err
    assert files_under(tmp_path) == before


def test_lake_runs_truncated_zip_writes_nothing(tmp_path, monkeypatch, capsys):
    good = runs_zip(tmp_path / "g.zip")
    trunc = tmp_path / "cut.zip"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    assert cli.main(["prepare-runs", "--zip", str(trunc), "--out", str(tmp_path / "runs.pt")]) == 1
    assert "cut.zip" in capsys.readouterr().err
    assert files_under(tmp_path) == before


def test_lake_runs_label_file_over_the_limit_is_refused(tmp_path, monkeypatch):
    from vhe.data import archives

    p = runs_zip(tmp_path / "r.zip")
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 50)
    with pytest.raises(DataIntegrityError, match=r"r\.zip: member 'run01/class_labels\.txt' declares \d+ bytes"):
        load_lake_runs(p)
