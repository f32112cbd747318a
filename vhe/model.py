"""The Variational Homoencoder: a DAG of latents with encoders, priors and one decoder.

``VHE.score`` is the VHE lower bound on log p(x) for one target element x (Hewitt et al.
2018, eq. 4 generalised to any DAG of latents):

    log p(x | parents(x)) - sum_k  w_k * [log q(k | D_k, pa_q(k)) - log p(k | pa_p(k))]

with every latent drawn once from its encoder (reparameterised, or REINFORCE for
discrete latents) and ``w_k = kl_factor_k / |X_k|``: the KL of a latent shared by the
|X_k| elements of its group (the class size) is divided among them (``rescale=True``).
With ``rescale=False`` it is divided by |D_k|, the support-set size, which is the Neural
Statistician's per-element weighting. The other switch of the paper's comparison,
*resample* (whether the target is a member of D), is a property of how episodes are drawn:
see :class:`vhe.DataLoader` (``resample=``) and :mod:`vhe.objectives`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
from torch import nn

from .graph import Factor, GraphError, factor_of, topological_order
from .priors import NormalPrior

__all__ = ["VHE"]


def _as_factors(modules, role: str) -> list[Factor]:
    if modules is None:
        return []
    if isinstance(modules, nn.Module) and not isinstance(modules, (nn.ModuleList, nn.ModuleDict)):
        return [factor_of(modules, role)]
    if isinstance(modules, (Mapping, nn.ModuleDict)):
        return [factor_of(m, role, variable=k) for k, m in modules.items()]
    return [factor_of(m, role) for m in modules]


def _by_variable(factors: list[Factor], role: str) -> dict[str, Factor]:
    out: dict[str, Factor] = {}
    for f in factors:
        if f.variable in out:
            raise GraphError(f"two {role}s generate {f.variable!r}")
        out[f.variable] = f
    return out


class VHE(nn.Module):
    """A Variational Homoencoder built from encoder, decoder and (optional) prior modules.

    Args:
        encoder: one module, a list, or a dict {latent: module}; each is q(latent | D, parents).
        decoder: the module p(x | parents); its variable names the observed data.
        prior: None, a module, a list or a dict {latent: module} of p(latent | parents).
            Latents without one get :class:`NormalPrior` N(0, I).
        latent_shape: optional {latent: shape} for default priors whose encoder has no
            ``latent_shape`` attribute (lets the model sample before it has scored).
    """

    def __init__(self, encoder, decoder, prior=None, latent_shape: Mapping | None = None):
        super().__init__()
        enc = _by_variable(_as_factors(encoder, "encoder"), "encoder")
        if not enc:
            raise GraphError("a VHE needs at least one encoder")
        dec = factor_of(decoder, "decoder")
        if dec.variable in enc:
            raise GraphError(f"{dec.variable!r} is both the decoder's variable and a latent")
        pri = _by_variable(_as_factors(prior, "prior"), "prior")
        for name in pri:
            if name not in enc:
                raise GraphError(f"prior given for {name!r}, which no encoder generates (latents: {sorted(enc)})")
        latent_shape = dict(latent_shape or {})
        for name, f in enc.items():
            if name not in pri:
                shape = latent_shape.get(name, getattr(f.module, "latent_shape", None))
                pri[name] = factor_of(NormalPrior(name, shape), "prior")

        latents = set(enc)
        edges: dict[str, set[str]] = {}
        for name in enc:
            ps = set(enc[name].parents) | set(pri[name].parents)
            for role, f in (("encoder", enc[name]), ("prior", pri[name])):
                for p in f.parents:
                    if p not in latents:
                        raise GraphError(
                            f"the {role} of {name!r} ({type(f.module).__name__}) has parent {p!r}, "
                            f"which is not a latent (latents: {sorted(latents)})"
                        )
            edges[name] = ps
        for p in dec.parents:
            if p not in latents:
                raise GraphError(
                    f"the decoder ({type(dec.module).__name__}) has parent {p!r}, which is not a latent "
                    f"(latents: {sorted(latents)})"
                )
        self.order: list[str] = topological_order(edges)
        self.parents_of = {k: frozenset(v) for k, v in edges.items()}
        self._enc, self._pri, self._dec = enc, pri, dec
        self.encoder = nn.ModuleDict({k: f.module for k, f in enc.items()})
        self.prior = nn.ModuleDict({k: f.module for k, f in pri.items()})
        self.decoder = dec.module
        self.observed = dec.variable
        # REINFORCE baselines (running mean of the learning signal) for discrete latents.
        for k in self.order:
            self.register_buffer(f"_baseline_{k}", torch.zeros(()))
        self.baseline_decay = 0.9

    def _sample_prior(self, k, values, batch_size):
        """Sample latent k from its prior; parentless priors get ``batch_size`` if they take it."""
        pri = self._pri[k]
        if pri.parents:
            v, _ = pri(parents=values)
            return v
        if "batch_size" in inspect.signature(pri.module.forward).parameters:
            v, _ = pri.module(batch_size=batch_size, **{k: None})
        else:
            v, _ = pri(parents=values)
        if v.shape[0] == 1 and batch_size != 1:
            v = v.expand(batch_size, *v.shape[1:])
        elif v.shape[0] != batch_size:
            raise ValueError(
                f"the prior of {k!r} returned a batch of {v.shape[0]} (wanted {batch_size}); let its "
                f"forward take a batch_size keyword or return a batch of 1"
            )
        return v

    @property
    def latents(self) -> list[str]:
        """Latent names in topological order (parents first)."""
        return list(self.order)

    def parents(self, variable: str, role: str = "encoder") -> tuple[str, ...]:
        """Declared parents of a variable: of its encoder (default) or its prior (``role="prior"``);
        for the observed variable (``model.observed``), the decoder's parents."""
        if variable == self.observed:
            return self._dec.parents
        factors = {"encoder": self._enc, "prior": self._pri}.get(role)
        if factors is None:
            raise ValueError(f"role must be 'encoder' or 'prior', got {role!r}")
        if variable not in factors:
            raise KeyError(f"no latent {variable!r} (latents: {self.order}; observed: {self.observed!r})")
        return factors[variable].parents

    def descendants(self, latent: str) -> set[str]:
        """Latents that depend on ``latent`` (directly or not), excluding itself."""
        out: set[str] = set()
        for k in self.order:
            if self.parents_of[k] & (out | {latent}):
                out.add(k)
        return out

    # ------------------------------------------------------------------ scoring
    def _weights(self, inputs, sizes, kl_factor, rescale):
        weights = {}
        for k in self.order:
            factor = kl_factor.get(k, 1.0) if isinstance(kl_factor, Mapping) else kl_factor
            if rescale:
                if sizes is None or k not in sizes:
                    raise KeyError(
                        f"sizes has no entry for latent {k!r} (got {sorted(sizes or {})}); "
                        f"pass the class size |X| of every latent, e.g. batch.sizes"
                    )
                size = sizes[k]
            else:
                size = inputs[k].shape[1]
            size = torch.as_tensor(size, dtype=torch.float32, device=inputs[k].device)
            weights[k] = factor / size
        return weights

    def _check_inputs(self, inputs, sizes):
        if not isinstance(inputs, Mapping):
            raise TypeError("inputs must be a dict {latent: support set (batch, |D|, ...)}")
        missing = [k for k in self.order if k not in inputs]
        if missing:
            raise KeyError(f"inputs has no support set for latent(s) {missing} (got {sorted(inputs)})")
        extra = [k for k in inputs if k not in self._enc]
        if extra:
            raise KeyError(f"inputs has key(s) {extra} that are not latents of this model {self.order}")
        if sizes is not None:
            extra = [k for k in sizes if k not in self._enc]
            if extra:
                raise KeyError(f"sizes has key(s) {extra} that are not latents of this model {self.order}")
        for k in self.order:
            if inputs[k].dim() < 2:
                raise ValueError(f"inputs[{k!r}] must be (batch, |D|, ...), got shape {tuple(inputs[k].shape)}")

    def _group_sizes(self, inputs, n_targets: int) -> dict[str, int]:
        """Rows of every latent: n_targets (one support set per target) or n_targets / T (one per
        group of T targets, as :class:`vhe.DataLoader` gives with ``targets_per_class=T``)."""
        batch = {k: int(inputs[k].shape[0]) for k in self.order}
        smaller = {b for b in batch.values() if b != n_targets}
        if len(smaller) > 1 or any(n_targets % b for b in smaller):
            raise ValueError(
                f"support sets disagree on the batch size: {batch} for {n_targets} targets; each latent needs "
                f"one support set per target, or one per group of T targets (n_targets / T rows, the same T for all)"
            )
        for k in self.order:
            for p in self.parents_of[k]:
                if batch[p] > batch[k]:
                    raise ValueError(
                        f"latent {k!r} has {batch[k]} support sets but its parent {p!r} has {batch[p]}: "
                        f"a latent shared by a group of targets cannot depend on a per-target one"
                    )
        return batch

    @staticmethod
    def _broadcast(t: torch.Tensor, rows: int) -> torch.Tensor:
        """Repeat each row of t (its group's value) for the rows // len(t) members of its group."""
        return t if t.shape[0] == rows else t.repeat_interleave(rows // t.shape[0], dim=0)

    def _parents_at(self, values: dict, rows: int) -> dict:
        return {k: self._broadcast(v, rows) for k, v in values.items()}

    def score(
        self,
        inputs,
        sizes=None,
        x=None,
        kl_factor=1.0,
        return_kl: bool = False,
        rescale: bool = True,
        reduction: str = "mean",
        **observed,
    ):
        """The VHE lower bound on log p(x) (nats per target element).

        Args:
            inputs: {latent: support set D_k of shape (B, |D_k|, ...)}; a latent may instead have
                B / T rows, one support set shared by each group of T consecutive targets
                (``DataLoader(targets_per_class=T)``): one sample of it serves the group, and each
                target's bound carries its full weighted KL, so the per-target objective is the
                same in expectation.
            sizes: {latent: |X_k|, a number or a tensor with one entry per row of inputs[k]}: how
                many training elements share the target's label for latent k (batch.sizes from
                :class:`vhe.DataLoader`).
            x: the targets (B, ...); or pass them under the decoder's variable name.
            kl_factor: a number or {latent: number} multiplying each KL (annealing).
            return_kl: also return {latent: KL_k (B,) or its mean}, unweighted nats.
            rescale: divide KL_k by |X_k| (VHE) instead of |D_k| (Neural Statistician).
            reduction: "mean" (scalar, mean over the batch), "sum" or "none" ((B,)).
        Returns: the bound, and the KL dict when ``return_kl``.
        """
        if x is None:
            x = observed.pop(self.observed, None)
        if observed:
            raise TypeError(f"score() got unexpected keyword(s) {sorted(observed)}")
        if x is None:
            raise ValueError(f"score() needs the targets: x=... (or {self.observed}=...)")
        self._check_inputs(inputs, sizes)
        n = int(x.shape[0])
        rows = self._group_sizes(inputs, n)
        weights = self._weights(inputs, sizes, kl_factor, rescale)

        values, kls, weighted, logqs = {}, {}, {}, {}
        for k in self.order:
            enc, pri = self._enc[k], self._pri[k]
            parents = self._parents_at(values, rows[k])
            v, log_q = enc(inputs[k], parents=parents)
            _, log_p = pri(parents=parents, value=v)
            values[k] = v
            kl = log_q - log_p
            w = weights[k]
            if rows[k] != n:  # a group's KL counts in full for each of its targets
                kl, log_q = self._broadcast(kl, n), self._broadcast(log_q, n)
                w = self._broadcast(w, n) if w.dim() else w
            if self._is_discrete(v, log_q):
                logqs[k] = log_q
            kls[k] = kl
            weighted[k] = w * kl
        _, log_px = self._dec(parents=self._parents_at(values, n), value=x)
        bound = log_px - sum(weighted.values())
        bound = bound + self._reinforce(logqs, log_px, weighted)

        bound = self._reduce(bound, reduction)
        if return_kl:
            kl = {k: self._reduce(v.detach(), reduction) for k, v in kls.items()}
            return bound, kl
        return bound

    @staticmethod
    def _is_discrete(value, log_q) -> bool:
        """A latent needs REINFORCE when its sample carries no gradient but its log q does."""
        return torch.is_grad_enabled() and log_q.requires_grad and not value.requires_grad

    def _reinforce(self, logqs, log_px, weighted):
        """Score-function surrogate for discrete latents (adds 0 to the value, right gradient).

        Each discrete latent k is credited only with the terms that depend on it: its own
        weighted KL, those of its descendants, and log p(x | ...). A running-mean baseline
        per latent reduces variance.
        """
        if not logqs:
            return 0.0
        total = 0.0
        for k, log_q in logqs.items():
            downstream = self.descendants(k) | {k}
            signal = (log_px - sum(weighted[j] for j in downstream)).detach()
            baseline = getattr(self, f"_baseline_{k}")
            advantage = signal - baseline
            surrogate = advantage * log_q
            total = total + surrogate - surrogate.detach()
            if self.training:
                baseline.mul_(self.baseline_decay).add_((1 - self.baseline_decay) * signal.mean())
        return total

    @staticmethod
    def _reduce(t, reduction):
        if reduction == "mean":
            return t.mean()
        if reduction == "sum":
            return t.sum()
        if reduction == "none":
            return t
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")

    # ----------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, inputs=None, batch_size: int | None = None, return_latents: bool = False, values=None):
        """Draw x from the model, in eval mode and without gradients.

        Args:
            inputs: None (sample every latent from its prior) or {latent: support set
                (B, |D|, ...)}: those latents come from their encoders q(k | D_k, ...), the rest
                from their priors given their parents (posterior-predictive samples).
            batch_size: number of samples; defaults to the support sets' batch size.
            values: optional {latent: value (B, ...)} held fixed (e.g. one inferred alphabet
                latent, repeated, to draw new characters from p(c | a)).
        Returns: x (B, ...), and {latent: value} when ``return_latents``.
        """
        inputs = dict(inputs or {})
        fixed = dict(values or {})
        extra = [k for k in list(inputs) + list(fixed) if k not in self._enc]
        if extra:
            raise KeyError(f"inputs/values have key(s) {extra} that are not latents of this model {self.order}")
        sizes = {t.shape[0] for t in list(inputs.values()) + list(fixed.values())}
        if batch_size is None:
            if not sizes:
                raise ValueError("sample() needs batch_size when no support sets are given")
            if len(sizes) > 1:
                raise ValueError(f"the support sets/values disagree on the batch size: {sorted(sizes)}")
            batch_size = sizes.pop()
        elif sizes and sizes != {batch_size}:
            raise ValueError(f"batch_size={batch_size} but the support sets have batch size {sizes}")
        was_training = self.training
        self.eval()
        try:
            values = {}
            for k in self.order:
                if k in fixed:
                    v = fixed[k]
                elif k in inputs:
                    v, _ = self._enc[k](inputs[k], parents=values)
                else:
                    v = self._sample_prior(k, values, batch_size)
                values[k] = v
            x, _ = self._dec(parents=values)
        finally:
            self.train(was_training)
        return (x, values) if return_latents else x
