"""Normalization layers by name: the registry (:mod:`bnstudy.norms.registry`) and one module
per family, each registering its norms with what bnstudy needs to know about them.

Every constructor takes channels first and maps ``(N, C, *spatial)`` to the same shape; one
name builds the 1D, 2D or 3D variant. The registered norms, in this order (the report's):

- :mod:`~bnstudy.norms.batch`: ``batch`` (torch's BN with ghost batches), ``batch_manual`` (BN
  written out with the framework knobs), ``batch_keras`` (Keras/TF defaults);
- :mod:`~bnstudy.norms.renorm`: ``batch_renorm`` (Ioffe 2017);
- :mod:`~bnstudy.norms.frozen`: ``frozen_bn`` and ``frozen_stats``, a trained BN's
  statistics fixed for fine-tuning (detectron2's FrozenBN; γ and β fixed or trained);
- :mod:`~bnstudy.norms.evonorm`: ``evonorm_b0`` (batch variance) and ``evonorm_s0`` (per
  sample) (Liu et al. 2020);
- :mod:`~bnstudy.norms.per_sample`: ``group``, ``instance``, ``layer``;
- :mod:`~bnstudy.norms.weight_standardization`: ``group_ws``, GroupNorm with weight-standardized
  convolutions (Qiao et al. 2019);
- :mod:`~bnstudy.norms.frn`: ``frn``, Filter Response Normalization with its TLU (Singh &
  Krishnan 2020);
- :mod:`~bnstudy.norms.identity`: ``none``.

``python -m bnstudy norms`` (``bnstudy norms``) lists them with what each averages over.
"""

# registration order is the report's order
from bnstudy.norms import batch, renorm, frozen, evonorm, per_sample, weight_standardization, frn  # noqa: F401, I001
from bnstudy.norms import identity  # noqa: F401, I001
from bnstudy.norms.registry import (
    ACTIVATIONS,
    NORMS,
    NormOptions,
    NormSpec,
    conv_layer,
    create_norm,
    create_norm_act,
    module_spec,
    norm_spec,
    progress_layers,
    register_norm,
    uses_batch_statistics,
)

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "NormOptions",
    "NormSpec",
    "conv_layer",
    "create_norm",
    "create_norm_act",
    "module_spec",
    "norm_spec",
    "progress_layers",
    "register_norm",
    "uses_batch_statistics",
]
