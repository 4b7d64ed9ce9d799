"""Torch entropy models: where a bottleneck's output becomes symbols, likelihoods and bytes.

- :class:`FactorizedPrior`: a learned density per channel.
- :class:`GaussianConditional`: per-element Gaussians from a scale family.
- :class:`Hyperprior`: the neural rate estimator (and a coder with side information).
- :class:`MeanScaleHyperprior`: a hyperprior that predicts means as well (Minnen et al., NeurIPS 2018).

FactorizedPrior and Hyperprior follow :class:`EntropyCoder`, the protocol the
feature codec codes with; coding never changes a module's mode or buffers.

Each is an ``nn.Module`` whose integer coding tables live in its state_dict
(:meth:`update_tables` builds them); :func:`estimate_bits` turns likelihoods
into the differentiable rate; ``rate_report`` sets the estimate beside the
actual bytes.  Needs PyTorch (``import featcodec`` itself does not).
"""

from ._base import ChecksumOption, ChecksumRequirement, EntropyModel, StaleTablesError, checksum_size, estimate_bits
from ._factorized import FactorizedPrior
from ._gaussian import GaussianConditional, default_scale_table
from ._hyperprior import Hyperprior, MeanScaleHyperprior
from ._ledger import GAP_CAUSES, PartLedger, RateReport
from ._protocol import EntropyCoder
from ._quantizer import QUANTIZE_MODES, dequantize, quantize, symbols_of

__all__ = [
    "ChecksumOption",
    "ChecksumRequirement",
    "EntropyCoder",
    "EntropyModel",
    "FactorizedPrior",
    "GAP_CAUSES",
    "GaussianConditional",
    "Hyperprior",
    "MeanScaleHyperprior",
    "PartLedger",
    "QUANTIZE_MODES",
    "RateReport",
    "StaleTablesError",
    "checksum_size",
    "default_scale_table",
    "dequantize",
    "estimate_bits",
    "quantize",
    "symbols_of",
]
