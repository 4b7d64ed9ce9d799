"""featcodec: fast, lossless entropy coding for split-DNN feature codecs.

The numpy-level API::

    import featcodec as fc
    tables = fc.CdfTables.gaussian(scales)            # or .from_pmf, .laplace, ...
    data = fc.encode(symbols, tables, indexes)        # bytes
    symbols = fc.decode(data, tables, indexes)        # int32 array
    bits = fc.information_content(symbols, tables, indexes)

``import featcodec`` needs only numpy and the native extension; the CUDA
table kernels are in :mod:`featcodec.cuda`, imported on demand.
"""

from ._core import FORMAT_VERSION
from ._family import Family
from ._tables import CdfTables, default_tail_mass
from ._coding import DEFAULT_CHUNK_SIZE, DecodeError, decode, encode, information_content
from ._parametric import decode_parametric, element_cdf, encode_parametric, parametric_intervals, scale_index
from ._kernels import check_requested_kernels as _check_requested_kernels

__version__ = "0.1.0"

_check_requested_kernels()

__all__ = [
    "CdfTables",
    "DEFAULT_CHUNK_SIZE",
    "DecodeError",
    "FORMAT_VERSION",
    "Family",
    "decode",
    "decode_parametric",
    "default_tail_mass",
    "element_cdf",
    "encode",
    "encode_parametric",
    "information_content",
    "parametric_intervals",
    "scale_index",
]
