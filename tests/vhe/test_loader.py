"""Episode sampling: support sets from the right class, sizes, resample switch, transforms, resume."""

import pytest
import torch

from vhe import DataLoader, Transform


def make(n_classes=6, per_class=5, **kw):
    data = torch.arange(n_classes * per_class).float()[:, None]  # element i has value i
    labels = torch.arange(n_classes * per_class) // per_class
    defaults = dict(labels={"c": labels, "z": range(len(data))}, k_shot={"c": 3, "z": 1}, batch_size=7, seed=0)
    defaults.update(kw)
    return DataLoader(data, **defaults), labels


def test_support_sets_share_the_label_and_sizes_are_class_sizes():
    loader, labels = make()
    seen = torch.zeros(30, dtype=torch.long)
    for batch in loader:
        t = batch.index
        seen[t] += 1
        assert torch.equal(batch.target[:, 0].long(), t)
        sup = batch.inputs["c"][..., 0].long()
        assert batch.inputs["c"].shape[1:] == (3, 1)
        assert (labels[sup] == labels[t][:, None]).all()
        assert all(len(set(row.tolist())) == 3 for row in sup)  # without replacement
        assert torch.equal(batch.inputs["z"][:, 0, 0].long(), t)  # z's class is the element itself
        assert (batch.sizes["c"] == 5).all() and (batch.sizes["z"] == 1).all()
    assert (seen == 1).all() and len(loader) == 5  # every element is a target once per epoch


def test_resample_false_puts_target_first_and_not_again():
    loader, labels = make(resample={"c": False, "z": True})
    for batch in loader:
        sup = batch.inputs["c"][..., 0].long()
        assert torch.equal(sup[:, 0], batch.index)
        assert not (sup[:, 1:] == batch.index[:, None]).any()


def test_resample_true_is_independent_of_target():
    loader, _ = make(n_classes=1, per_class=6, k_shot={"c": 2, "z": 1}, batch_size=6)
    hits = 0
    for _ in range(200):
        batch = next(iter(loader))
        hits += (batch.inputs["c"][..., 0].long() == batch.index[:, None]).any(1).sum().item()
    # P(target in D) = k/|X| = 1/3 when D is drawn independently of the target
    assert abs(hits / (200 * 6) - 1 / 3) < 0.05


def test_seeded_and_resumable_mid_epoch():
    a, _ = make()
    b, _ = make()
    it = iter(a)
    first = [next(it) for _ in range(2)]
    state = a.state_dict()
    rest_a = [x for x in it] + [next(iter(a))]
    b.load_state_dict(state)
    rest_b = [x for x in iter(b)] + [next(iter(b))]
    for x, y in zip(rest_a, rest_b):
        assert torch.equal(x.target, y.target) and torch.equal(x.inputs["c"], y.inputs["c"])
    c, _ = make()
    assert torch.equal(next(iter(c)).inputs["c"], first[0].inputs["c"])


def test_deterministic_label_mapping_for_strings():
    data = torch.zeros(4, 1)
    loader = DataLoader(data, labels={"c": ["b", "a", "b", "a"]}, k_shot={"c": 2}, batch_size=4, seed=0)
    batch = next(iter(loader))
    assert torch.equal(batch.labels["c"], torch.tensor([1, 0, 1, 0])[batch.index])


def test_transforms_new_classes_or_within_class_variation():
    data = torch.arange(12).float()[:, None]
    labels = torch.arange(12) // 4
    negate = Transform(lambda x, s: x * s, args=[1.0, -1.0], share_labels=["c", "z"])
    loader = DataLoader(
        data + 1,
        labels={"c": labels, "z": range(12)},
        k_shot={"c": 3, "z": 1},
        batch_size=12,
        transforms=[negate],
        seed=0,
    )
    batch = next(iter(loader))
    sign = batch.target.sign()
    assert (batch.inputs["c"].sign() == sign[:, None]).all()  # the transform defines new classes
    assert (batch.sizes["c"] == 4).all()
    vary = Transform(lambda x, s: x * s, args=[1.0, -1.0], share_labels=["z"])
    loader = DataLoader(
        data + 1,
        labels={"c": labels, "z": range(12)},
        k_shot={"c": 3, "z": 1},
        batch_size=12,
        transforms=[vary],
        seed=0,
    )
    batches = [next(iter(loader)) for _ in range(10)]
    assert all((b.sizes["c"] == 8).all() for b in batches)  # the class is the union over the transform
    mixed = torch.cat([(b.inputs["c"].sign() != b.target.sign()[:, None]).flatten() for b in batches])
    assert mixed.any()


def test_errors():
    data = torch.zeros(10, 1)
    labels = torch.tensor([0] * 8 + [1] * 2)
    with pytest.raises(ValueError, match="fewer than k_shot=3"):
        DataLoader(data, labels={"c": labels}, k_shot={"c": 3})
    with pytest.raises(KeyError, match="same latents"):
        DataLoader(data, labels={"c": labels}, k_shot={"z": 1})
    with pytest.raises(ValueError, match="has 9 entries"):
        DataLoader(data, labels={"c": labels[:9]}, k_shot={"c": 1})


# ------------------------------------------------------------ several targets per support set
def test_targets_per_class_groups_share_one_support_set_and_visit_every_anchor():
    loader, labels = make(batch_size=8, targets_per_class=4)
    assert loader.group == "c" and loader.shared == {"c"} and loader.groups_per_batch == 2
    anchors = torch.zeros(30, dtype=torch.long)
    for batch in loader:
        B = len(batch.target) // 4
        assert batch.targets_per_class == 4 and batch.inputs["c"].shape[:2] == (B, 3)
        assert batch.inputs["z"].shape[:2] == (4 * B, 1) and batch.sizes["c"].shape == (B,)
        t = batch.index.view(B, 4)
        assert (labels[t] == labels[t[:, :1]]).all()  # a group's targets share their class ...
        assert all(len(set(row.tolist())) == 4 for row in t)  # ... and are distinct
        sup = batch.inputs["c"][..., 0].long()
        assert (labels[sup] == labels[t[:, 0]][:, None]).all()
        assert torch.equal(batch.inputs["z"][:, 0, 0].long(), batch.index)
        anchors[t[:, 0]] += 1
    assert (anchors == 1).all() and len(loader) == 15  # every element anchors one group per epoch


def test_targets_per_class_without_resampling_scores_the_support_set_itself():
    loader, labels = make(batch_size=6, targets_per_class=3, resample={"c": False, "z": True})
    batch = next(iter(loader))
    sup = batch.inputs["c"][..., 0].long()  # (2, 3)
    assert torch.equal(batch.index.view(2, 3), sup)  # the targets are exactly D


def test_targets_per_class_marginals_match_one_target_per_class():
    """Every target is marginally uniform over the data, and D is independent of the targets."""
    loader, labels = make(batch_size=400, targets_per_class=4)
    counts = torch.zeros(30)
    overlap = 0.0
    for _ in range(50):
        b = loader.sample()
        counts += torch.bincount(b.index, minlength=30)
        sup = b.inputs["c"][..., 0].long()  # (100, 3)
        overlap += (sup[:, :, None] == b.index.view(100, 4)[:, None, :]).any(dim=1).float().mean().item()
    freq = counts / counts.sum()
    assert (freq - 1 / 30).abs().max() < 0.01
    assert abs(overlap / 50 - 3 / 5) < 0.03  # P(target in D) = k/|X|, as for independent draws


def test_targets_per_class_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="multiple of targets_per_class"):
        make(batch_size=7, targets_per_class=2)
    with pytest.raises(ValueError, match="only 5 elements"):
        make(batch_size=12, targets_per_class=6)
    with pytest.raises(ValueError, match="must be <= k_shot"):
        make(batch_size=8, targets_per_class=4, resample={"c": False, "z": True})
    with pytest.raises(KeyError, match="not a latent"):
        make(batch_size=8, targets_per_class=2, group="a")
