"""Errors that point CompressAI users to featcodec's names.

Someone coming from CompressAI calls ``update()``, ``loss()`` or
``build_indexes()`` on a featcodec model; a bare AttributeError would leave
them guessing.  Each model lists the CompressAI names it has an equivalent
for, and looking one up raises an AttributeError that names the equivalent.
No CompressAI import is needed for that (featcodec.compat.compressai is the
only module that imports CompressAI).
"""

from __future__ import annotations

from typing import ClassVar, Union

import torch

_TABLE_BUFFERS = "tables (a featcodec.CdfTables: .cdf(), .offsets, .lengths), built by update_tables()"

#: Names CompressAI's EntropyBottleneck and GaussianConditional share.
ENTROPY_MODEL_NAMES = {
    "update": "update_tables() (after training; the tables then travel with state_dict())",
    "quantize": "featcodec.entropy.quantize(y, q_step, mode, means) (modes 'round', 'ste', 'noise')",
    "dequantize": "featcodec.entropy.dequantize(symbols, q_step, means)",
    "quantized_cdf": _TABLE_BUFFERS,
    "_quantized_cdf": _TABLE_BUFFERS,
    "offset": _TABLE_BUFFERS,
    "_offset": _TABLE_BUFFERS,
    "cdf_length": _TABLE_BUFFERS,
    "_cdf_length": _TABLE_BUFFERS,
    "entropy_coder": "featcodec.encode / featcodec.decode, which compress() and decompress() call",
    "entropy_coder_precision": "precision",
}

FACTORIZED_NAMES = {
    **ENTROPY_MODEL_NAMES,
    "loss": "aux_loss()",
    "_get_medians": "quantiles[:, 0, 1] (and FactorizedPrior(around_median=True) to quantize around them)",
    "_update_quantiles": "aux_loss() (train the quantiles); the tables' support is found on the density itself",
    "target": "aux_loss(), which computes its targets from tail_mass",
}

GAUSSIAN_NAMES = {
    **ENTROPY_MODEL_NAMES,
    "build_indexes": "table_indexes(scales, q_step); compress() and decompress() take the scales themselves",
    "update_scale_table": "GaussianConditional(scale_table=...) then update_tables()",
    "lower_bound_scale": "scale_table[0] (scales are bounded below by the smallest family scale)",
    "scale_bound": "scale_table[0] (scales are bounded below by the smallest family scale)",
}

HYPERPRIOR_NAMES = {
    "update": "update_tables()",
    "entropy_bottleneck": "z_model (a featcodec.entropy.FactorizedPrior)",
    "gaussian_conditional": "y_model (a featcodec.entropy.GaussianConditional)",
}


class CompressAINames:
    """Mixin for nn.Modules: a CompressAI attribute name raises an AttributeError naming featcodec's equivalent."""

    _compressai_names: ClassVar[dict[str, str]] = {}

    def __getattr__(self, name: str) -> Union[torch.Tensor, torch.nn.Module]:
        try:
            return super().__getattr__(name)  # type: ignore[misc]  # nn.Module's, next in the MRO
        except AttributeError:
            equivalent = self._compressai_names.get(name)
            if equivalent is None:
                raise
            raise AttributeError(
                f"'{type(self).__name__}' has no attribute '{name}' (a CompressAI name); "
                f"featcodec's equivalent: {equivalent}"
            ) from None
