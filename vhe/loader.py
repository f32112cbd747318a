"""Episode sampling for VHE training (the paper's Algorithm 1), vectorised with tensors.

For every target element x (one batch row) and every latent k, the loader draws a support
set D_k of ``k_shot[k]`` elements that share x's label for k, and reports |X_k|, the number
of elements sharing that label (the class size the VHE divides KL_k by).

Support sets and the target (``resample``):
* ``resample=True`` (VHE, default): D_k is a uniformly random subset of the class drawn
  *without replacement* and independently of the target, exactly as Algorithm 1 draws
  D ⊂ X; D_k may therefore contain the target itself (probability k/|X_k|).
* ``resample=False`` (Neural Statistician): the target is D_k's first element and the other
  k-1 are drawn without replacement from the rest of its class.
A class with fewer than ``k_shot[k]`` members is an error (raised at construction, naming it).

Several targets per support set (``targets_per_class`` T > 1, a cheaper training step):
a batch is ``batch_size // T`` groups; each group is one class of the ``group`` latent (default:
the finest non-singleton grouping, ``c`` in the class model) with T distinct targets of that class
and *one* support set per latent whose label is constant within the class (``c``; the alphabet
``a`` too). Latents whose label varies within the class (``z``; the texture ``t``) still get one
support set per target. With ``resample=True`` for the group latent, the T targets are drawn
without replacement from the class and D independently of them (as Algorithm 1 draws D for each
target, so every target's objective is unchanged in expectation); with ``resample=False``
(Neural Statistician) the targets are the first T elements of D (T <= k_shot), so a set is
scored through its own elements, as the Neural Statistician was trained. Each group is built
around an *anchor* element visited once per epoch (an epoch is ``len(data)`` anchors, i.e.
``len(data) * T`` targets), so every target is marginally uniform over the data, as with T = 1.
In the batch, shared latents' inputs/sizes/labels have ``B = batch_size // T`` rows and
per-target ones ``B * T`` rows (group-major: targets ``b*T .. b*T+T-1`` belong to group b);
:meth:`vhe.VHE.score` broadcasts the shared latents to their group's targets.

All randomness comes from one ``torch.Generator`` on the data's device (``seed=``); the
loader's state (generator, epoch permutation, position) round-trips through
``state_dict`` so an interrupted run resumes with the same episodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Batch", "DataLoader", "Transform", "encode_labels"]


@dataclass
class Batch:
    """One batch of episodes.

    inputs: {latent: support set (B_k, k_shot[latent], ...)}
    sizes:  {latent: (B_k,) float tensor, |X_latent| for each row}
    target: (B, ...) the elements to reconstruct
    index:  (B,) int64 indices of the targets in ``data``
    labels: {latent: (B_k,) int64 label ids}
    targets_per_class: T; B_k = B for per-target latents and B // T for latents shared by a
        group of T targets (see the module docstring); T = 1: every B_k = B.
    """

    inputs: dict
    sizes: dict
    target: torch.Tensor
    index: torch.Tensor
    labels: dict = field(default_factory=dict)
    targets_per_class: int = 1


class Transform:
    """A random transformation of data elements, e.g. the 8 dihedral maps of an image.

    Args:
        f: ``f(x, arg) -> x'`` applied to a tensor of elements (n, ...) with one argument.
        args: the possible arguments; each target draws one uniformly.
        share_labels: latents whose support sets use the *target's* argument, so that the
            transformed elements form new classes (e.g. a rotated character is a new
            character). For the other latents every support element draws its own argument,
            so the transform varies within the class. None means every latent shares.
    """

    def __init__(self, f, args: Sequence, share_labels: Sequence[str] | None = None):
        if not callable(f):
            raise TypeError("Transform f must be callable as f(x, arg)")
        self.f = f
        self.args = list(args)
        if not self.args:
            raise ValueError("Transform needs at least one argument")
        self.share_labels = None if share_labels is None else set(share_labels)

    def shares(self, latent: str) -> bool:
        return self.share_labels is None or latent in self.share_labels

    def apply(self, x: torch.Tensor, arg_index: torch.Tensor) -> torch.Tensor:
        """Apply f to each element of x (n, ...) with its argument index (n,)."""
        out = torch.empty_like(x)
        for a in torch.unique(arg_index).tolist():
            mask = arg_index == a
            out[mask] = self.f(x[mask], self.args[a]).to(out.dtype)
        return out


def encode_labels(labels) -> np.ndarray:
    """Map any labels (ints, strings, a range, a tensor) to ids 0..L-1 in sorted label order."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    elif isinstance(labels, range):
        labels = np.arange(labels.start, labels.stop, labels.step)
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be one label per element (1-D), got shape {arr.shape}")
    _, ids = np.unique(arr, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


class _Groups:
    """Members of every class of one latent as a padded table (n_classes, max class size)."""

    def __init__(self, ids: np.ndarray, device):
        order = np.argsort(ids, kind="stable")
        counts = np.bincount(ids)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.max_count = int(counts.max())
        slot = np.arange(len(order)) - np.repeat(offsets, counts)  # index of each member within its class
        table = np.zeros((len(counts), self.max_count), dtype=np.int64)
        table[ids[order], slot] = order
        position = np.empty_like(order)
        position[order] = slot
        self.ids = torch.as_tensor(ids, device=device)
        self.table = torch.as_tensor(table, device=device)
        self.sizes = torch.as_tensor(counts, dtype=torch.float32, device=device)
        self.position = torch.as_tensor(position, device=device)
        # +inf on the padding slots of smaller classes (None when all classes have one size)
        pad = np.where(np.arange(self.max_count)[None, :] < counts[:, None], 0.0, np.inf).astype(np.float32)
        self.pad = torch.as_tensor(pad, device=device) if (counts != self.max_count).any() else None

    def draw(self, targets: torch.Tensor, k: int, include_target: bool, gen):
        """(indices (B, k) of k distinct members of each target's class, class ids (B,)).

        Without ``include_target`` the k members are a uniform random subset of the class; with
        it the target comes first and the other k-1 are drawn from the rest of its class.
        """
        cls = self.ids[targets]
        if self.max_count == 1 or (include_target and k == 1):  # D = {target}
            return targets[:, None], cls
        keys = torch.rand((len(targets), self.max_count), generator=gen, device=targets.device)
        if self.pad is not None:
            keys += self.pad[cls]
        if include_target:
            keys.scatter_(1, self.position[targets][:, None], float("inf"))
        pos = keys.topk(k - int(include_target), dim=1, largest=False, sorted=False).indices
        idx = self.table[cls[:, None], pos]
        if include_target:
            idx = torch.cat([targets[:, None], idx], dim=1)
        return idx, cls


class DataLoader:
    """Iterate over episodes: every element of ``data`` is a target once per epoch.

    Args:
        data: tensor (N, ...) (or array-like); kept on ``device`` (default: its own).
        labels: {latent: labels (N,)}: elements with equal labels share that latent.
        k_shot: {latent: |D|}: support-set size given to each encoder.
        batch_size: targets per batch.
        transforms: list of :class:`Transform`.
        resample: True/False or {latent: bool}; see the module docstring.
        shuffle: visit targets in random order each epoch.
        drop_last: drop the last incomplete batch.
        seed: seeds the loader's own generator (None: a random seed from torch).
        dtype: convert returned tensors to this dtype (e.g. torch.float32 for uint8 images).
        targets_per_class: T targets sharing one support set per class (module docstring);
            ``batch_size`` stays the number of targets per batch and must be a multiple of T.
        group: the latent whose classes the T targets share (default: the non-singleton latent
            with the most classes); only used when T > 1.
    """

    def __init__(
        self,
        data,
        labels: Mapping,
        k_shot: Mapping,
        batch_size: int = 1,
        transforms=(),
        resample=True,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int | None = None,
        device=None,
        dtype=None,
        targets_per_class: int = 1,
        group: str | None = None,
    ):
        data = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
        self.data = data.to(device) if device is not None else data
        self.device = self.data.device
        n = len(self.data)
        if set(labels) != set(k_shot):
            raise KeyError(f"labels and k_shot must name the same latents: {sorted(labels)} vs {sorted(k_shot)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.shuffle, self.drop_last, self.dtype = int(batch_size), shuffle, drop_last, dtype
        self.k_shot = {k: int(v) for k, v in k_shot.items()}
        self.transforms = list(transforms)
        self.resample = {k: (resample[k] if isinstance(resample, Mapping) else bool(resample)) for k in labels}
        self.groups: dict[str, _Groups] = {}
        for k, lab in labels.items():
            ids = encode_labels(lab)
            if len(ids) != n:
                raise ValueError(f"labels[{k!r}] has {len(ids)} entries but data has {n} elements")
            if self.k_shot[k] < 1:
                raise ValueError(f"k_shot[{k!r}] must be >= 1, got {self.k_shot[k]}")
            counts = np.bincount(ids)
            small = np.flatnonzero(counts < self.k_shot[k])
            if len(small):
                raise ValueError(
                    f"latent {k!r}: {len(small)} class(es) have fewer than k_shot={self.k_shot[k]} elements "
                    f"(e.g. label id {small[0]} has {counts[small[0]]}); lower k_shot or drop those classes"
                )
            self.groups[k] = _Groups(ids, self.device)
        self._setup_groups(int(targets_per_class), group, labels)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed) if seed is not None else int(torch.randint(2**62, ()).item()))
        self._perm: torch.Tensor | None = None
        self._pos = 0

    def _setup_groups(self, T: int, group: str | None, labels: Mapping) -> None:
        """Check and record ``targets_per_class`` (T), the group latent and the shared latents."""
        if T < 1:
            raise ValueError(f"targets_per_class must be >= 1, got {T}")
        self.targets_per_class, self.group, self.shared = T, None, set()
        if T == 1:
            return
        if self.batch_size % T:
            raise ValueError(f"batch_size={self.batch_size} is not a multiple of targets_per_class={T}")
        if group is None:
            candidates = [k for k, g in self.groups.items() if g.max_count > 1]
            if not candidates:
                raise ValueError("targets_per_class > 1 needs a latent whose classes have several elements")
            group = max(candidates, key=lambda k: len(self.groups[k].sizes))
        if group not in self.groups:
            raise KeyError(f"group={group!r} is not a latent of this loader ({sorted(self.groups)})")
        g = self.groups[group]
        small = int(g.sizes.min())
        if small < T:
            raise ValueError(f"targets_per_class={T} but a class of {group!r} has only {small} elements")
        if not self.resample[group] and T > self.k_shot[group]:
            raise ValueError(
                f"with resample=False for {group!r} the targets are members of D: targets_per_class={T} "
                f"must be <= k_shot[{group!r}]={self.k_shot[group]}"
            )
        gid = g.ids.cpu().numpy()
        for k, other in self.groups.items():
            pairs = np.unique(np.stack([gid, other.ids.cpu().numpy()]), axis=1).shape[1]
            if pairs == len(g.sizes):  # one label of k per class of the group: shared by its targets
                self.shared.add(k)
        for k in self.shared - {group}:
            if not self.resample[k]:
                raise ValueError(
                    f"targets_per_class > 1 with resample=False for the shared latent {k!r} is not "
                    f"supported (only the group latent {group!r} can contain its targets)"
                )
        self.group = group

    @property
    def groups_per_batch(self) -> int:
        """Support-set groups per batch: batch_size // targets_per_class."""
        return self.batch_size // self.targets_per_class

    def __len__(self) -> int:
        n, b = len(self.data), self.groups_per_batch
        return n // b if self.drop_last else -(-n // b)

    # ------------------------------------------------------------- episodes
    def episode(self, targets: torch.Tensor) -> Batch:
        """Build the episodes whose targets are the elements ``targets`` (B,) int64.

        With ``targets_per_class`` T > 1 these are the groups' anchors (B groups, B * T targets:
        each anchor and T - 1 other members of its class; see the module docstring).
        """
        anchors = torch.as_tensor(targets, dtype=torch.long, device=self.device)
        gen, T = self.generator, self.targets_per_class
        n_groups = len(anchors)
        t_args = [torch.randint(len(t.args), (n_groups,), generator=gen, device=self.device) for t in self.transforms]
        group_support = None
        if T == 1:
            targets = anchors
        else:
            g = self.groups[self.group]
            if self.resample[self.group]:
                tidx, _ = g.draw(anchors, T, include_target=True, gen=gen)
            else:  # the targets are the first T members of D
                group_support, _ = g.draw(anchors, self.k_shot[self.group], include_target=True, gen=gen)
                tidx = group_support[:, :T]
            targets = tidx.reshape(-1)
        target_args = [a.repeat_interleave(T) if T > 1 else a for a in t_args]
        # draw every latent's support indices, then gather all images in one index_select
        index, args, shapes, sizes, labels = [targets], [[a] for a in target_args], {}, {}, {}
        for k, g in self.groups.items():
            shared = k in self.shared
            rows, row_args = (anchors, t_args) if shared else (targets, target_args)
            if k == self.group and group_support is not None:
                idx, cls = group_support, g.ids[anchors]
            else:
                idx, cls = g.draw(rows, self.k_shot[k], include_target=not self.resample[k], gen=gen)
            size = g.sizes[cls]
            for t, ta, arg_list in zip(self.transforms, row_args, args):
                if t.shares(k):
                    arg_list.append(ta[:, None].expand_as(idx).reshape(-1))
                else:
                    arg_list.append(torch.randint(len(t.args), (idx.numel(),), generator=gen, device=self.device))
                    size = size * len(t.args)
            index.append(idx.reshape(-1))
            shapes[k] = idx.shape
            sizes[k] = size
            labels[k] = cls
        images = self._transformed(torch.cat(index), [torch.cat(a) for a in args])
        pieces = images.split([len(i) for i in index])
        inputs = {k: p.reshape(*shapes[k], *p.shape[1:]) for k, p in zip(self.groups, pieces[1:])}
        return Batch(inputs=inputs, sizes=sizes, target=pieces[0], index=targets, labels=labels, targets_per_class=T)

    def _transformed(self, index: torch.Tensor, args: list[torch.Tensor]) -> torch.Tensor:
        x = self.data.index_select(0, index)
        for t, a in zip(self.transforms, args):
            x = t.apply(x, a)
        return x.to(self.dtype) if self.dtype is not None else x

    def sample(self, batch_size: int | None = None) -> Batch:
        """One batch of episodes with targets (anchors, when T > 1) drawn uniformly at random (with replacement)."""
        b = (batch_size or self.batch_size) // self.targets_per_class
        if b < 1:
            raise ValueError(f"batch_size must be >= targets_per_class={self.targets_per_class}")
        return self.episode(torch.randint(len(self.data), (b,), generator=self.generator, device=self.device))

    def _exhausted(self) -> bool:
        n = len(self.data)
        return self._pos >= n or (self.drop_last and self._pos + self.groups_per_batch > n)

    def __iter__(self):
        """One epoch (or the rest of the current one, after a break or a resume)."""
        n = len(self.data)
        if self._perm is None or self._exhausted():
            self._perm = (
                torch.randperm(n, generator=self.generator, device=self.device)
                if self.shuffle
                else torch.arange(n, device=self.device)
            )
            self._pos = 0
        while not self._exhausted():
            targets = self._perm[self._pos : self._pos + self.groups_per_batch]
            self._pos += len(targets)
            yield self.episode(targets)

    # ---------------------------------------------------------- resumption
    def state_dict(self) -> dict:
        """Generator state and position in the current epoch (for exact resumption)."""
        return {
            "generator": self.generator.get_state(),
            "perm": None if self._perm is None else self._perm.cpu(),
            "pos": self._pos,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._perm = None if state["perm"] is None else state["perm"].to(self.device)
        self._pos = int(state["pos"])
