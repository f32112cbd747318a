"""Variational Homoencoder (Hewitt et al., UAI 2018): generic library.

from vhe import VHE, DataLoader
model = VHE(encoder=[Qc(), Qz()], decoder=Px())
loader = DataLoader(data, labels={"c": classes, "z": range(len(data))}, k_shot={"c": 5, "z": 1}, batch_size=32)
for batch in loader:
    log_prob = model.score(inputs=batch.inputs, sizes=batch.sizes, x=batch.target)
"""

from .graph import Factor, GraphError, declare
from .loader import Batch, DataLoader, Transform
from .model import VHE
from .objectives import OBJECTIVES, Objective, get_objective
from .priors import NormalPrior

__version__ = "0.2.0"
__all__ = [
    "VHE",
    "DataLoader",
    "Transform",
    "Batch",
    "NormalPrior",
    "declare",
    "Factor",
    "GraphError",
    "Objective",
    "OBJECTIVES",
    "get_objective",
]
