"""The factor graph of a VHE: which variable each module generates, its parents, and the order.

A *factor* is an ``nn.Module`` whose ``forward`` scores or samples one variable:

* encoder  q(v | D, parents):  ``forward(inputs, *parents, v=None) -> (value, log_prob)``
* prior    p(v | parents):     ``forward(*parents, v=None) -> (value, log_prob)``
* decoder  p(x | parents):     ``forward(*parents, x=None) -> (value, log_prob)``

The variable and parents are read from the signature of ``forward`` with
``inspect.signature`` (the variable is the *last* named parameter; the parents are
the named parameters before it, after ``inputs`` for an encoder; a parameter named
``batch_size`` is reserved for parentless priors and is neither). A module may
instead declare them explicitly with the attributes ``vhe_variable`` (str) and
``vhe_parents`` (tuple of str), e.g. through :func:`declare`; it is then called with
the parents positionally, in the declared order, and the variable by keyword.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

__all__ = ["Factor", "GraphError", "declare", "factor_of", "topological_order"]


class GraphError(ValueError):
    """Raised when the encoder/decoder/prior modules do not form a valid DAG."""


@dataclass(frozen=True)
class Factor:
    """How to call one module: its variable, its parents, and which parents go by keyword."""

    module: nn.Module
    variable: str
    parents: tuple[str, ...]
    keyword_parents: frozenset[str]
    role: str  # "encoder" | "prior" | "decoder"

    def __call__(self, *args, parents: dict, value=None):
        """Call the module with ``args`` (e.g. the support set), its parents and the variable."""
        positional = [parents[p] for p in self.parents if p not in self.keyword_parents]
        keywords = {p: parents[p] for p in self.keyword_parents}
        keywords[self.variable] = value
        out = self.module(*args, *positional, **keywords)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(
                f"{self.role} for {self.variable!r} ({type(self.module).__name__}) must return "
                f"a tuple (value, log_prob); got {type(out).__name__}"
            )
        return out


def declare(module: nn.Module, variable: str, parents=()) -> nn.Module:
    """Declare a module's variable and parents explicitly (returns the same module)."""
    module.vhe_variable = str(variable)
    module.vhe_parents = tuple(parents)
    return module


def factor_of(module: nn.Module, role: str, variable: str | None = None) -> Factor:
    """Read the variable and parents of ``module`` (explicit attributes first, then its signature).

    ``variable``, when given (the key of a dict of modules), must agree with what the
    module declares or its signature names.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"{role} must be an nn.Module, got {type(module).__name__}")
    if hasattr(module, "vhe_variable"):
        declared = str(module.vhe_variable)
        parents = tuple(getattr(module, "vhe_parents", ()))
        if variable is not None and variable != declared:
            raise GraphError(
                f"{role} {type(module).__name__} is registered under {variable!r} but declares "
                f"vhe_variable={declared!r}"
            )
        return Factor(module, declared, parents, frozenset(), role)

    sig = inspect.signature(module.forward)
    named = [
        p
        for p in sig.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and p.name != "batch_size"  # reserved: how many samples a parentless prior draws
    ]
    needed = 2 if role == "encoder" else 1
    if len(named) < needed:
        what = "(inputs, *parents, v=None)" if role == "encoder" else "(*parents, v=None)"
        raise GraphError(
            f"cannot read the variable of {role} {type(module).__name__}: forward{sig} should look "
            f"like forward{what}; or declare it with vhe.declare(module, variable, parents)"
        )
    var_param = named[-1]
    if variable is not None and var_param.name != variable:
        # A dict key names the variable; the signature's last parameter must agree.
        raise GraphError(
            f"{role} {type(module).__name__} is registered under {variable!r} but its forward's "
            f"last parameter is {var_param.name!r}; rename it or use vhe.declare"
        )
    parent_params = named[(1 if role == "encoder" else 0) : -1]
    keyword = frozenset(p.name for p in parent_params if p.kind == inspect.Parameter.KEYWORD_ONLY)
    if role == "encoder" and named[0].kind == inspect.Parameter.KEYWORD_ONLY:
        raise GraphError(f"encoder {type(module).__name__}: `inputs` must be positional")
    return Factor(module, var_param.name, tuple(p.name for p in parent_params), keyword, role)


def topological_order(edges: dict[str, set[str]]) -> list[str]:
    """Order variables so that every parent comes before its children.

    ``edges[v]`` is the set of parents of ``v``. Raises :class:`GraphError` naming the
    cycle when there is one. Ties are broken by first appearance in ``edges``.
    """
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    stack: list[str] = []

    def visit(v: str) -> None:
        if state.get(v) == 2:
            return
        if state.get(v) == 1:
            cycle = stack[stack.index(v) :] + [v]
            raise GraphError("the latent variables form a cycle: " + " -> ".join(cycle))
        state[v] = 1
        stack.append(v)
        for p in sorted(edges.get(v, ()), key=list(edges).index):
            visit(p)
        stack.pop()
        state[v] = 2
        order.append(v)

    for v in edges:
        visit(v)
    return order
