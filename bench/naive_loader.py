"""BASELINE ONLY: a straightforward per-element episode sampler, for benchmarking ``vhe.DataLoader``.

This is *not* part of the library and nothing should train with it. It reproduces the
approach of the original VHE code (Hewitt et al. 2018): a Python dict mapping every label to
the list of its members, one ``np.random.choice`` per target element per latent, and the
support sets assembled by stacking numpy arrays element by element. It samples the same
episodes (in distribution) as :class:`vhe.DataLoader`, so ``bench.bench_loader`` can compare
their throughput on equal terms:

* every element is a target once per epoch (shuffled), batches of ``batch_size``;
* latent k gets a support set of ``k_shot[k]`` distinct members of the target's class:
  ``resample=True`` draws them uniformly from the whole class (the target may be among
  them), ``resample=False`` puts the target first and draws the other k-1 from the rest;
* ``sizes[k]`` is the class size |X_k|, ``labels[k]`` the label id (0..L-1, sorted order).

Output: a :class:`vhe.Batch` of torch tensors with the same shapes, dtypes and meaning as
the vectorised loader's (transforms are not supported). The support indices of the last
batch are kept in ``last_support`` (for tests).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from vhe.loader import Batch, encode_labels

__all__ = ["NaiveDataLoader"]


class NaiveDataLoader:
    """Per-element Python/numpy episode sampler (the baseline; see the module docstring).

    Args mirror :class:`vhe.DataLoader`: data (N, ...) array or tensor, labels {latent: (N,)},
    k_shot {latent: int}, batch_size, resample (bool or {latent: bool}), shuffle, drop_last,
    seed (numpy RandomState), dtype (torch dtype of the returned images, e.g. torch.float32),
    device (the returned tensors are moved there at the end, as the original code did).
    """

    def __init__(
        self,
        data,
        labels: Mapping,
        k_shot: Mapping,
        batch_size: int = 1,
        resample=True,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int | None = None,
        dtype=None,
        device=None,
    ):
        self.data = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        if set(labels) != set(k_shot):
            raise KeyError(f"labels and k_shot must name the same latents: {sorted(labels)} vs {sorted(k_shot)}")
        self.k_shot = {k: int(v) for k, v in k_shot.items()}
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.dtype, self.device = dtype, device
        self.resample = {k: (resample[k] if isinstance(resample, Mapping) else bool(resample)) for k in labels}
        self.rng = np.random.RandomState(seed)
        # The original code's data structure: {latent: {label: [member indices]}} and a label per element.
        self.label_of: dict[str, list[int]] = {}
        self.members: dict[str, dict[int, list[int]]] = {}
        for k, lab in labels.items():
            ids = encode_labels(lab).tolist()
            if len(ids) != len(self.data):
                raise ValueError(f"labels[{k!r}] has {len(ids)} entries but data has {len(self.data)} elements")
            groups: dict[int, list[int]] = {}
            for i, label in enumerate(ids):
                groups.setdefault(label, []).append(i)
            for label, m in groups.items():
                if len(m) < self.k_shot[k]:
                    raise ValueError(f"latent {k!r}: label id {label} has {len(m)} < k_shot={self.k_shot[k]} elements")
            self.label_of[k] = ids
            self.members[k] = groups
        self.last_support: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _support(self, k: str, i: int) -> list[int]:
        members = self.members[k][self.label_of[k][i]]
        n = self.k_shot[k]
        if self.resample[k]:
            return list(self.rng.choice(members, n, replace=False))
        others = [j for j in members if j != i]
        return [i] + list(self.rng.choice(others, n - 1, replace=False))

    def episode(self, targets) -> Batch:
        targets = [int(t) for t in targets]
        inputs, sizes, labels = {}, {}, {}
        for k in self.k_shot:
            support_idx, support_sets = [], []
            for i in targets:  # one np.random.choice per element per latent
                idx = self._support(k, i)
                support_idx.append(idx)
                support_sets.append(np.stack([self.data[j] for j in idx]))
            self.last_support[k] = np.asarray(support_idx, dtype=np.int64)
            inputs[k] = self._tensor(np.stack(support_sets))
            sizes[k] = torch.tensor([float(len(self.members[k][self.label_of[k][i]])) for i in targets])
            labels[k] = torch.tensor([self.label_of[k][i] for i in targets], dtype=torch.int64)
        target = self._tensor(np.stack([self.data[i] for i in targets]))
        index = torch.tensor(targets, dtype=torch.int64)
        if self.device is not None:
            sizes = {k: v.to(self.device) for k, v in sizes.items()}
            labels = {k: v.to(self.device) for k, v in labels.items()}
            index = index.to(self.device)
        return Batch(inputs=inputs, sizes=sizes, target=target, index=index, labels=labels)

    def _tensor(self, arr: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(arr)
        if self.dtype is not None:
            t = t.to(self.dtype)
        return t.to(self.device) if self.device is not None else t

    def __iter__(self):
        n = len(self.data)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield self.episode(order[start : start + self.batch_size])
