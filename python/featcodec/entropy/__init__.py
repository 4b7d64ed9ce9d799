"""Torch entropy models: where a bottleneck's output becomes symbols, likelihoods and bytes.

Needs PyTorch (``import featcodec`` itself does not).
"""

from ._quantizer import QUANTIZE_MODES, dequantize, quantize, symbols_of

__all__ = ["QUANTIZE_MODES", "dequantize", "quantize", "symbols_of"]
