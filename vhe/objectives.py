"""The objectives the paper compares, as the two switches of docs/design.md.

* resample: the decoded target is drawn from the class independently of the support set D
  (``DataLoader(resample=True)``) instead of being a member of D (``resample=False``).
* rescale: the class latent's KL is divided by |X| (``VHE.score(rescale=True)``) instead of
  by |D| (``rescale=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Objective", "OBJECTIVES", "get_objective"]


@dataclass(frozen=True)
class Objective:
    """One point of the paper's 2x2 comparison (the VAE baseline uses any of them: no class latent)."""

    name: str
    resample: bool
    rescale: bool


OBJECTIVES = {
    "ns": Objective("ns", resample=False, rescale=False),
    "resample": Objective("resample", resample=True, rescale=False),
    "rescale": Objective("rescale", resample=False, rescale=True),
    "vhe": Objective("vhe", resample=True, rescale=True),
}


def get_objective(name: str) -> Objective:
    """Look up an objective by name: one of ns, resample, rescale, vhe."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}") from None
