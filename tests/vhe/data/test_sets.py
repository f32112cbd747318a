"""vhe.data.sets: the OmniglotSet container, save/load, subsets, concatenation, splits, k-shot checks."""

import pytest
import torch

from vhe.data.readers import load_npz_arrays
from vhe.data.sets import OmniglotSet, check_k_shot, concat_sets, split_validation

from .helpers import needs_mirror, tiny_set
from .mirror import MIRROR


# --------------------------------------------------------------------------- container, save and load
@needs_mirror
def test_max_characters_and_save_load(tmp_path):
    s = load_npz_arrays(MIRROR / "train_small.npz", max_characters=25)
    assert s.n_classes == 25 and len(s) == 500
    p = s.save(tmp_path / "x" / "bg.pt")
    d = torch.load(p, weights_only=True)
    assert isinstance(d, dict) and d["format"] == "vhe.OmniglotSet"
    t = OmniglotSet.load(p)
    assert torch.equal(t.images, s.images) and t.character_names == s.character_names
    assert torch.equal(t.drawer, s.drawer) and t.alphabet_names == s.alphabet_names


def test_load_rejects_other_files(tmp_path):
    torch.save({"format": "something"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a saved OmniglotSet"):
        OmniglotSet.load(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="prepare-omniglot"):
        OmniglotSet.load(tmp_path / "missing.pt")


# --------------------------------------------------------------------------- set operations
def test_subset_remaps_labels():
    s = tiny_set()
    t = s.subset(s.character != 1)
    assert t.n_classes == 2 and t.character.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert t.character_names == ["A0/character01", "A1/character03"] and t.alphabet_names == ["A0", "A1"]
    u = s.subset(torch.tensor([7, 3]))
    assert u.character.tolist() == [1, 0] and u.character_names == ["A0/character02", "A1/character03"]
    assert u.alphabet.tolist() == [1, 0]
    with pytest.raises(ValueError, match="bool mask"):
        s.subset(torch.ones(3, dtype=torch.bool))


def test_concat_sets_dedupes_by_name():
    s = tiny_set()
    both = concat_sets([s, s.subset(s.character == 2)])
    assert len(both) == len(s) and both.character_names == s.character_names
    assert len(concat_sets([s, s], dedupe=False)) == 2 * len(s)


def test_check_k_shot():
    s = tiny_set(counts=(20, 3, 20))
    check_k_shot(s, 3)
    with pytest.raises(ValueError, match=r"'A0/character02' has 3") as e:
        check_k_shot(s, 5)
    assert "k=5" in str(e.value)


@needs_mirror
def test_check_k_shot_real(background):
    check_k_shot(background, 20)
    with pytest.raises(ValueError, match="964 class"):
        check_k_shot(background, 21)


def test_split_validation_disjoint_and_deterministic():
    s = tiny_set(counts=(2,) * 30, alphabets=tuple(i % 3 for i in range(30)))
    tr, va = split_validation(s, n_val_characters=6, seed=3)
    assert va.n_classes == 6 and tr.n_classes == 24 and len(tr) + len(va) == len(s)
    assert not set(tr.character_names) & set(va.character_names)
    assert set(tr.character_names) | set(va.character_names) == set(s.character_names)
    tr2, va2 = split_validation(s, n_val_characters=6, seed=3)
    assert va2.character_names == va.character_names and torch.equal(va2.images, va.images)
    _, va3 = split_validation(s, n_val_characters=6, seed=4)
    assert va3.character_names != va.character_names
    torch.manual_seed(123)  # the global RNG must not matter
    assert split_validation(s, fraction=0.2, seed=3)[1].character_names == va.character_names
    for bad in [
        dict(),
        dict(n_val_characters=0),
        dict(n_val_characters=30),
        dict(fraction=1.5),
        dict(n_val_characters=2, fraction=0.1),
    ]:
        with pytest.raises(ValueError):
            split_validation(s, **bad)
