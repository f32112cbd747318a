"""The benchmark's per-element baseline samples the same kind of episodes as vhe.DataLoader."""

import pytest
import torch

from bench.naive_loader import NaiveDataLoader
from vhe import DataLoader

# 5 classes of unequal sizes (6, 7, 8, 9, 10); element i holds the value i (so images reveal indices)
SIZES = [6, 7, 8, 9, 10]
LABELS = torch.repeat_interleave(torch.arange(len(SIZES)), torch.tensor(SIZES))
N = len(LABELS)
DATA = torch.arange(N, dtype=torch.uint8)[:, None, None, None].expand(N, 1, 2, 2).contiguous()


def loaders(resample=True, batch_size=8, k=4):
    kw = dict(
        labels={"c": LABELS, "z": torch.arange(N)},
        k_shot={"c": k, "z": 1},
        batch_size=batch_size,
        resample=resample,
        seed=0,
        dtype=torch.float32,
    )
    return DataLoader(DATA, **kw), NaiveDataLoader(DATA, **kw)


def test_same_shapes_dtypes_and_keys_as_vhe_loader():
    fast, naive = loaders()
    a, b = next(iter(fast)), next(iter(naive))
    for k in ("c", "z"):
        assert a.inputs[k].shape == b.inputs[k].shape and a.inputs[k].dtype == b.inputs[k].dtype
        assert a.sizes[k].shape == b.sizes[k].shape and a.sizes[k].dtype == b.sizes[k].dtype
        assert a.labels[k].shape == b.labels[k].shape and a.labels[k].dtype == b.labels[k].dtype
    assert a.target.shape == b.target.shape == (8, 1, 2, 2) and a.target.dtype == b.target.dtype
    assert a.index.dtype == b.index.dtype and len(naive) == len(fast)


def test_support_from_the_target_class_without_replacement_and_class_sizes():
    _, naive = loaders()
    seen = torch.zeros(N, dtype=torch.long)
    for b in naive:
        t = b.index
        seen[t] += 1
        assert torch.equal(b.target[:, 0, 0, 0].long(), t)
        sup = b.inputs["c"][:, :, 0, 0, 0].long()
        assert torch.equal(sup, torch.as_tensor(naive.last_support["c"]))
        assert (LABELS[sup] == LABELS[t][:, None]).all()
        assert all(len(set(r.tolist())) == 4 for r in sup)
        assert torch.equal(b.inputs["z"][:, 0, 0, 0, 0].long(), t)  # z's class is the element itself
        assert torch.equal(b.sizes["c"], torch.tensor(SIZES, dtype=torch.float32)[LABELS[t]])
        assert (b.sizes["z"] == 1).all()
        assert torch.equal(b.labels["c"], LABELS[t])
    assert (seen == 1).all()  # every element a target once per epoch


def test_resample_false_puts_the_target_first_and_not_again():
    _, naive = loaders(resample={"c": False, "z": True})
    for b in naive:
        sup = b.inputs["c"][:, :, 0, 0, 0].long()
        assert torch.equal(sup[:, 0], b.index)
        assert not (sup[:, 1:] == b.index[:, None]).any()


def test_resample_true_includes_the_target_about_k_over_class_size():
    _, naive = loaders(batch_size=N)
    hits = total = 0
    expected = 0.0
    for _ in range(40):
        b = next(iter(naive))
        sup = b.inputs["c"][:, :, 0, 0, 0].long()
        hits += int((sup == b.index[:, None]).any(dim=1).sum())
        total += len(b.index)
        expected += float((4.0 / b.sizes["c"]).sum())
    assert abs(hits - expected) < 0.1 * total


def test_small_class_is_an_error():
    with pytest.raises(ValueError, match="k_shot"):
        NaiveDataLoader(DATA, labels={"c": LABELS}, k_shot={"c": 7})
