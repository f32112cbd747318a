"""Neural network modules for the `vhe` library.

Every module is a distribution: ``forward`` returns ``(value, log_prob)`` with
``log_prob`` of shape ``(B,)`` in nats, and declares ``vhe_variable`` and
``vhe_parents``. See :mod:`vhe.nets.base` for the calling conventions, and
:mod:`vhe.nets.spatial` for the paper's spatial-latent (deformable template) family, whose
parents may also be maps ``(B, C, H, W)``.
"""

from .base import VHEModule, bernoulli_log_prob, make_mlp, normal_log_prob
from .decoders import DeconvDecoder
from .encoders import ConvFeatures, GaussianImageEncoder, GaussianSetEncoder
from .pixelcnn import GatedPixelCNNLayer, PixelCNNDecoder
from .priors import GaussianConditionalPrior
from .spatial import (
    AffineWarp,
    MultiScaleMap,
    SpatialConvDecoder,
    SpatialGaussianPrior,
    SpatialImageEncoder,
    SpatialPixelCNNDecoder,
    SpatialPixelCNNPrior,
    SpatialSetEncoder,
    SpatialTransformer,
    warp,
)

__all__ = [
    "VHEModule",
    "ConvFeatures",
    "GaussianSetEncoder",
    "GaussianImageEncoder",
    "GaussianConditionalPrior",
    "DeconvDecoder",
    "PixelCNNDecoder",
    "GatedPixelCNNLayer",
    "SpatialSetEncoder",
    "SpatialImageEncoder",
    "SpatialPixelCNNDecoder",
    "SpatialConvDecoder",
    "SpatialGaussianPrior",
    "SpatialPixelCNNPrior",
    "SpatialTransformer",
    "AffineWarp",
    "MultiScaleMap",
    "warp",
    "make_mlp",
    "normal_log_prob",
    "bernoulli_log_prob",
]
