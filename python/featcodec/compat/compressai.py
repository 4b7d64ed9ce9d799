"""CompressAI models coded by featcodec: a drop-in accelerator, and converters both ways.

:func:`accelerate` swaps a CompressAI model's ``EntropyBottleneck`` and
``GaussianConditional`` modules for subclasses whose ``compress`` and
``decompress`` code with featcodec's rANS coder.  Everything else stays
CompressAI's: the call signatures and return structures (a list of byte
strings per call, one per batch element), the quantization (around the
medians for the bottleneck, around the means for the conditional), the
indexes from ``build_indexes(scales)``, ``forward``, ``update()``,
``aux_loss()`` and the state_dict, which loads back into a plain CompressAI
model.  So ``model.compress(x)`` and ``model.decompress(strings, shape)``
work unchanged, and decode to exactly the same ``x_hat``; only the bytes
differ (featcodec's message format, docs/format.md), so both ends must be
accelerated.

Two sources for the coding tables:

- ``tables="compressai"`` (the default): the integer CDFs of the model's own
  ``update()`` state (``_quantized_cdf``, ``_cdf_length``, ``_offset``), taken
  as they are.  The probabilities are CompressAI's to the last integer, and
  since they are stored in the checkpoint both ends code with the same
  integers without rebuilding anything from floats.
- ``tables="featcodec"``: rebuilt by featcodec's rate-optimal quantizer, on
  the support featcodec picks (where escaping becomes cheaper than a
  minimum frequency): the bottleneck's from its density in float64, the
  conditional's from its scale table.  Usually a little smaller; the
  bottleneck's tables then come from float parameters, so both ends must
  build them from the same checkpoint with the same library versions.

Models whose coding is not made of those modules' ``compress`` and
``decompress`` are refused with :class:`UnsupportedModelError`, before
anything is changed: autoregressive context models (``mbt2018``,
``cheng2020-*``: a ``MaskedConv2d`` context_prediction decoded symbol by
symbol with CompressAI's coder), and other entropy models (variable-rate,
mixtures).

The converters turn a CompressAI checkpoint's entropy modules into
featcodec's (:func:`factorized_prior_from_compressai`,
:func:`gaussian_conditional_from_compressai`) and back
(:func:`entropy_bottleneck_from_featcodec`,
:func:`gaussian_conditional_from_featcodec`), with identical likelihoods.

>>> import torch
>>> from compressai.models import ScaleHyperprior
>>> from featcodec.compat.compressai import accelerate
>>> model = ScaleHyperprior(8, 12).eval()
>>> _ = model.update()
>>> fast = accelerate(model)                      # a copy; inplace=True swaps in place
>>> x = torch.rand(1, 3, 64, 64)
>>> out = fast.compress(x)
>>> torch.equal(fast.decompress(out["strings"], out["shape"])["x_hat"],
...             model.decompress(**model.compress(x))["x_hat"])
True
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal, Mapping, Optional, Sequence, Union, cast

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck, EntropyModel, GaussianConditional  # type: ignore[import-untyped]
from compressai.layers import MaskedConv2d  # type: ignore[import-untyped]
from torch import nn

from .._coding import Checksum, checksum_size, decode, encode
from .._parametric import scale_index
from .._tables import CdfTables
from ..entropy import FactorizedPrior
from ..entropy import GaussianConditional as FeatcodecGaussianConditional

__all__ = [
    "AcceleratedEntropyBottleneck",
    "AcceleratedGaussianConditional",
    "TABLE_SOURCES",
    "UnsupportedModelError",
    "accelerate",
    "entropy_bottleneck_from_featcodec",
    "factorized_prior_from_compressai",
    "gaussian_conditional_from_compressai",
    "gaussian_conditional_from_featcodec",
]

TableSource = Literal["compressai", "featcodec"]
TABLE_SOURCES = ("compressai", "featcodec")


class UnsupportedModelError(ValueError):
    """A model that :func:`accelerate` cannot code with featcodec without changing what it decodes."""


# --- accelerate -----------------------------------------------------------------------


def accelerate(
    model: nn.Module,
    *,
    tables: TableSource = "compressai",
    checksum: Checksum = True,
    threads: Optional[int] = None,
    inplace: bool = False,
) -> nn.Module:
    """The model with its entropy modules coded by featcodec (see the module docstring).

    tables: "compressai" (the model's own integer CDFs) or "featcodec"
    (rebuilt rate-optimally).  checksum: each string carries featcodec's
    checksum (True: 4 bytes, or a size of 1, 2 or 4; False: none) and
    decompress requires it, so that corrupt bytes raise
    featcodec.DecodeError instead of decoding to garbage.  threads: for
    featcodec.encode / decode (default: all cores; a string is split into
    chunks of 2**19 symbols, so small ones use one).  inplace: swap the
    modules of ``model`` itself (their class changes; parameters and
    buffers are untouched) instead of a deep copy.

    Raises UnsupportedModelError, without changing anything, for models it
    cannot accelerate.  The tables follow the model's ``update()``: call it
    before coding, as with CompressAI.
    """
    if tables not in TABLE_SOURCES:
        raise ValueError(f"tables must be one of {TABLE_SOURCES}, got {tables!r}")
    checksum_size(checksum)  # ValueError for anything else
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_supported(model)
    if not inplace:
        model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, EntropyBottleneck):
            module.__class__ = AcceleratedEntropyBottleneck
        elif isinstance(module, GaussianConditional):
            module.__class__ = AcceleratedGaussianConditional
        else:
            continue
        module._setup_featcodec(tables, checksum, threads)  # type: ignore[operator]
    return model


def _check_supported(model: nn.Module) -> None:
    """UnsupportedModelError naming the first module that accelerate cannot handle."""
    found = False
    for name, module in model.named_modules():
        where = f"'{name}'" if name else "the model itself"
        if isinstance(module, MaskedConv2d):
            raise UnsupportedModelError(
                f"{type(model).__name__} is an autoregressive context model: {where} is a "
                f"{type(module).__name__}, so y's Gaussian parameters depend on the y elements decoded "
                "before them and the model codes y symbol by symbol with CompressAI's coder (not through "
                "GaussianConditional.compress).  featcodec.compat.compressai.accelerate supports models whose "
                "coding goes through EntropyBottleneck and GaussianConditional (bmshj2018-factorized, "
                "bmshj2018-hyperprior, mbt2018-mean, ...); nothing was changed"
            )
        if type(module) in (EntropyBottleneck, GaussianConditional, AcceleratedEntropyBottleneck,
                            AcceleratedGaussianConditional):
            found = True
            if module.entropy_coder_precision > 16:
                raise UnsupportedModelError(
                    f"{where} codes with precision {module.entropy_coder_precision}; featcodec's tables "
                    "have at most 16 bits; nothing was changed"
                )
        elif _is_other_entropy_model(module):
            raise UnsupportedModelError(
                f"{where} is a {type(module).__name__}, an entropy model accelerate does not know (it "
                "handles CompressAI's EntropyBottleneck and GaussianConditional exactly); nothing was changed"
            )
    if not found:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no EntropyBottleneck or GaussianConditional module to accelerate"
        )


def _is_other_entropy_model(module: nn.Module) -> bool:
    if isinstance(module, EntropyModel):
        return True
    # The variable-rate models (entropy_models_vbr) do not derive from EntropyModel.
    return any(cls.__module__.startswith("compressai.entropy_models") for cls in type(module).__mro__)


class _FeatcodecCoding:
    """What both accelerated modules share: the options, and tables that follow update()."""

    _quantized_cdf: torch.Tensor
    _cdf_length: torch.Tensor
    _offset: torch.Tensor
    entropy_coder_precision: int

    def _setup_featcodec(self, tables: TableSource, checksum: Checksum, threads: Optional[int]) -> None:
        self.featcodec_tables_source = tables
        self.featcodec_checksum = checksum
        self.featcodec_threads = threads
        self.__dict__["_featcodec_cache"] = None
        if self._quantized_cdf.numel():  # update()d already: build now rather than in the first compress
            self.coding_tables()

    def _table_sources(self) -> list[torch.Tensor]:
        """The tensors the tables derive from; a change of any (update(), load_state_dict) rebuilds them."""
        return [self._quantized_cdf, self._cdf_length, self._offset]

    def coding_tables(self) -> CdfTables:
        """featcodec's tables for the current update() state (built once, then cached)."""
        sources = self._table_sources()
        key = [(tensor, tensor._version) for tensor in sources]
        cached = self.__dict__.get("_featcodec_cache")
        if cached is not None and len(cached[0]) == len(key) and all(
            a is b and va == vb for (a, va), (b, vb) in zip(cached[0], key)
        ):
            return cached[1]
        self._check_updated()
        tables = self._compressai_tables() if self.featcodec_tables_source == "compressai" else self._rebuilt_tables()
        self.__dict__["_featcodec_cache"] = (key, tables)
        return tables

    def _check_updated(self) -> None:
        # The same checks and messages as CompressAI's compress and decompress.
        self._check_cdf_size()  # type: ignore[attr-defined]
        self._check_cdf_length()  # type: ignore[attr-defined]
        self._check_offsets_size()  # type: ignore[attr-defined]

    def _compressai_tables(self) -> CdfTables:
        return CdfTables.from_cdf(
            self._quantized_cdf.cpu().numpy(),
            self._offset.cpu().numpy(),
            self._cdf_length.cpu().numpy().astype(np.int64) - 2,  # CompressAI counts the escape and the 0
            precision=self.entropy_coder_precision,
        )

    def _rebuilt_tables(self) -> CdfTables:
        raise NotImplementedError

    def _symbols(self, inputs: torch.Tensor, means: Optional[torch.Tensor]) -> torch.Tensor:
        """CompressAI's ``quantize(inputs, "symbols", means)`` in fewer passes, where that is the same arithmetic."""
        if means is None:
            return torch.round(inputs).int()
        if means.dtype == inputs.dtype and torch.broadcast_shapes(inputs.shape, means.shape) == inputs.shape:
            return torch.sub(inputs, means).round_().int()
        return self.quantize(inputs, "symbols", means)  # type: ignore[attr-defined]

    def _encode_batch(self, symbols: torch.Tensor, indexes: np.ndarray, batch_indexes: bool) -> list[bytes]:
        tables = self.coding_tables()
        values = symbols.cpu().numpy()
        return [
            encode(values[i], tables, indexes[i] if batch_indexes else indexes,
                   checksum=self.featcodec_checksum, threads=self.featcodec_threads)
            for i in range(values.shape[0])
        ]

    def _decode_batch(self, strings: Sequence[bytes], indexes: np.ndarray, shape: Sequence[int],
                      batch_indexes: bool) -> torch.Tensor:
        tables = self.coding_tables()
        out = np.empty((len(strings), *shape), dtype=np.int32)
        for i, data in enumerate(strings):
            out[i] = decode(data, tables, indexes[i] if batch_indexes else indexes, shape=shape,
                            checksum=self.featcodec_checksum or None, threads=self.featcodec_threads)
        return torch.from_numpy(out)

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()  # type: ignore[misc,assignment]  # EntropyModel's
        state["_featcodec_cache"] = None  # native tables do not pickle; rebuilt on first use
        return state


class AcceleratedEntropyBottleneck(_FeatcodecCoding, EntropyBottleneck):
    """CompressAI's EntropyBottleneck, coded by featcodec: ``compress(x)``, ``decompress(strings, size)``."""

    def compress(self, x: torch.Tensor) -> list[bytes]:  # type: ignore[override]
        """One featcodec message per batch element of x (B, C, ...), symbols ``round(x - median)``."""
        if x.dim() < 2 or x.size(1) != self.channels:
            raise ValueError(f"expected a tensor of shape (B, {self.channels}, ...), got {tuple(x.shape)}")
        medians = self._extend_ndims(self._get_medians().detach(), x.dim() - 2)
        symbols = self._symbols(x, medians)
        return self._encode_batch(symbols, self._channel_indexes(x.dim() - 1), batch_indexes=False)

    def decompress(self, strings: Sequence[bytes], size: Sequence[int]) -> torch.Tensor:  # type: ignore[override]
        """The dequantized tensor (len(strings), C, *size) from :meth:`compress`'s strings."""
        if not isinstance(strings, (tuple, list)):
            raise ValueError("Invalid `strings` parameter type.")
        size = tuple(int(d) for d in size)
        symbols = self._decode_batch(strings, self._channel_indexes(len(size) + 1), (self.channels, *size),
                                     batch_indexes=False)
        medians = self._extend_ndims(self._get_medians().detach(), len(size))
        return self.dequantize(symbols.to(medians.device), medians, medians.dtype)

    def _channel_indexes(self, ndim: int) -> np.ndarray:
        """Table c for channel c of one batch element (C, ...) with ``ndim`` dimensions, broadcast."""
        return np.arange(self.channels, dtype=np.int32).reshape((self.channels,) + (1,) * (ndim - 1))

    def _rebuilt_tables(self) -> CdfTables:
        return factorized_prior_from_compressai(self, precision=self.entropy_coder_precision).tables


class AcceleratedGaussianConditional(_FeatcodecCoding, GaussianConditional):
    """CompressAI's GaussianConditional, coded by featcodec, with CompressAI's indexes and means."""

    def compress(self, inputs: torch.Tensor, indexes: torch.Tensor,  # type: ignore[override]
                 means: Optional[torch.Tensor] = None) -> list[bytes]:
        """One featcodec message per batch element, symbols ``round(inputs - means)`` with tables ``indexes``."""
        symbols = self._symbols(inputs, means)
        if inputs.dim() < 2:
            raise ValueError("Invalid `inputs` size. Expected a tensor with at least 2 dimensions.")
        if inputs.size() != indexes.size():
            raise ValueError("`inputs` and `indexes` should have the same size.")
        return self._encode_batch(symbols, self._table_indexes(indexes), batch_indexes=True)

    def decompress(self, strings: Sequence[bytes], indexes: torch.Tensor,  # type: ignore[override]
                   dtype: torch.dtype = torch.float, means: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The dequantized tensor of ``indexes``' shape from :meth:`compress`'s strings."""
        if not isinstance(strings, (tuple, list)):
            raise ValueError("Invalid `strings` parameter type.")
        if not len(strings) == indexes.size(0):
            raise ValueError("Invalid strings or indexes parameters")
        if indexes.dim() < 2:
            raise ValueError("Invalid `indexes` size. Expected a tensor with at least 2 dimensions.")
        if means is not None:
            if means.size()[:2] != indexes.size()[:2]:
                raise ValueError("Invalid means or indexes parameters")
            if means.size() != indexes.size() and any(means.size(i) != 1 for i in range(2, indexes.dim())):
                raise ValueError("Invalid means parameters")
        symbols = self._decode_batch(strings, self._table_indexes(indexes), tuple(indexes.shape[1:]),
                                     batch_indexes=True)
        return self.dequantize(symbols.to(self._quantized_cdf.device), means, dtype)

    def build_indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """CompressAI's indexes (the smallest table scale >= max(scale, scale_bound)), in one native pass.

        The same comparisons as CompressAI's loop over the table, so the
        same int32 tensor; cases outside the fast path (NaN, other dtypes, a
        table with repeated scales) take CompressAI's own loop.
        """
        if scales.dtype not in (torch.float32, torch.float64) or self.scale_table.numel() == 0:
            return super().build_indexes(scales)
        values = scales.detach().cpu().numpy()
        table = self.scale_table.detach().cpu().numpy().astype(np.float64)
        bound = self.lower_bound_scale.bound.detach().cpu().numpy().astype(values.dtype).reshape(-1)
        if bound.size == 1 and float(bound[0]) > table[0]:
            values = np.maximum(values, bound[0])  # else every value the bound lifts gets index 0 anyway
        try:
            indexes = scale_index(values, table)
        except ValueError:
            return super().build_indexes(scales)
        return torch.from_numpy(indexes).to(scales.device)

    @staticmethod
    def _table_indexes(indexes: torch.Tensor) -> np.ndarray:
        return indexes.detach().int().cpu().numpy()  # CompressAI truncates with .int() too

    def _table_sources(self) -> list[torch.Tensor]:
        return super()._table_sources() + [self.scale_table]

    def _rebuilt_tables(self) -> CdfTables:
        return CdfTables.gaussian(self.scale_table.detach().double().cpu().numpy(),
                                  precision=self.entropy_coder_precision)


# --- converters -----------------------------------------------------------------------

StateSource = Union[nn.Module, Mapping[str, torch.Tensor]]

#: Parameter names of CompressAI < 1.1 (the zoo's older checkpoints) and now.
_OLD_PARAMETER_NAMES = {"_matrix": "matrices.", "_bias": "biases.", "_factor": "factors."}


def _state_of(source: StateSource, prefix: str, kind: type) -> dict[str, torch.Tensor]:
    """The entries of ``source`` under ``prefix``, without it, with CompressAI's current parameter names."""
    if isinstance(source, nn.Module):
        if not isinstance(source, kind):
            raise TypeError(f"expected a CompressAI {kind.__name__} or a state dict, got {type(source).__name__}")
        return {key: value.detach() for key, value in source.state_dict().items()}
    if not isinstance(source, Mapping):
        raise TypeError(f"expected a CompressAI {kind.__name__} or a state dict, got {type(source).__name__}")
    state = {}
    for key, value in source.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            for old, new in _OLD_PARAMETER_NAMES.items():
                if name.startswith(old) and name[len(old):].isdigit():
                    name = new + name[len(old):]
            state[name] = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if not state:
        raise ValueError(f"no entries with prefix {prefix!r} in the state dict (keys such as "
                         f"{list(source)[:3]})")
    return state


def factorized_prior_from_compressai(
    source: StateSource, *, prefix: str = "", precision: int = 16, update_tables: bool = True
) -> FactorizedPrior:
    """A featcodec FactorizedPrior with the density of a CompressAI EntropyBottleneck.

    source: the EntropyBottleneck, or a state dict holding its entries under
    ``prefix`` (a whole model's checkpoint with ``prefix="entropy_bottleneck."``;
    both CompressAI's current and its pre-1.1 parameter names).  The widths
    of the density's MLP (CompressAI's default (3, 3, 3, 3); featcodec's
    (3, 3, 3)) are read from the weights, the tail mass from the ``target``
    buffer, and the prior quantizes around the medians (``around_median=True``)
    as CompressAI does; its likelihoods and y_hat are CompressAI's (q_step 1).
    The coding tables are built (featcodec's own) unless ``update_tables`` is False.
    """
    state = _state_of(source, prefix, EntropyBottleneck)
    layers = sum(1 for key in state if key.startswith("matrices."))
    if layers == 0 or "quantiles" not in state:
        raise ValueError(f"not an EntropyBottleneck state: no matrices.* or quantiles (keys {sorted(state)[:6]})")
    matrices = [state[f"matrices.{i}"] for i in range(layers)]
    channels = int(matrices[0].shape[0])
    filters = tuple(int(m.shape[1]) for m in matrices[:-1])
    tail_mass = 1e-9
    if "target" in state:
        tail_mass = 2.0 / (math.exp(float(state["target"].reshape(-1)[-1])) + 1.0)
    likelihood_bound = 1e-9
    if isinstance(source, EntropyBottleneck):
        likelihood_bound = float(source.likelihood_lower_bound.bound) if source.use_likelihood_bound else 0.0
    prior = FactorizedPrior(channels, filters=filters, tail_mass=tail_mass, likelihood_bound=likelihood_bound,
                            around_median=True, precision=precision)
    ours = {f"{group}.{i}": state[f"{group}.{i}"] for group in ("matrices", "biases", "factors")
            for i in range(layers if group != "factors" else layers - 1)}
    ours["quantiles"] = state["quantiles"]
    with torch.no_grad():
        for name, parameter in prior.named_parameters():
            if parameter.shape != ours[name].shape:
                raise ValueError(f"{name}: shape {tuple(ours[name].shape)} does not fit a density of "
                                 f"{channels} channels and filters {filters}")
            parameter.copy_(ours[name].to(parameter.dtype))
    if isinstance(source, nn.Module):
        prior.train(source.training)
    if update_tables:
        prior.update_tables()
    return prior


def entropy_bottleneck_from_featcodec(prior: FactorizedPrior) -> EntropyBottleneck:
    """A CompressAI EntropyBottleneck with the density of a featcodec FactorizedPrior, update()d.

    A prior with ``around_median=True`` converts as it is.  CompressAI always
    quantizes around the median, so a prior that quantizes around 0 gets a
    median of exactly 0 in the bottleneck: ``round(y - 0) + 0`` is
    ``round(y)``, so y_hat and the likelihoods stay featcodec's (the tail
    quantiles, which bound the tables, are kept; CompressAI's aux loss would
    move that median again if training went on).  Only q_step 1 has a
    CompressAI counterpart.
    """
    if not isinstance(prior, FactorizedPrior):
        raise TypeError(f"expected a featcodec FactorizedPrior, got {type(prior).__name__}")
    bottleneck = EntropyBottleneck(prior.channels, filters=prior.filters, tail_mass=prior.tail_mass,
                                   likelihood_bound=prior.likelihood_bound,
                                   entropy_coder_precision=prior.precision)
    with torch.no_grad():
        for name, parameter in bottleneck.named_parameters():
            parameter.copy_(prior.get_parameter(name).detach().to(parameter))
        if not prior.around_median:
            bottleneck.quantiles[:, :, 1] = 0.0
    bottleneck.update(force=True)
    return bottleneck.train(prior.training)


def gaussian_conditional_from_compressai(
    source: StateSource, *, prefix: str = "", precision: int = 16, update_tables: bool = True
) -> FeatcodecGaussianConditional:
    """A featcodec GaussianConditional with a CompressAI GaussianConditional's scale table and bound.

    source: the module, or a state dict holding ``scale_table`` (and
    ``scale_bound``) under ``prefix``.  The float32 scales become featcodec's
    float64 table exactly; featcodec bounds scales below by the smallest
    table scale, so a ``scale_bound`` other than it is refused.  Likelihoods
    are CompressAI's for the same (y, scales, means) with q_step 1.  Note the
    call: featcodec takes the scales, where CompressAI's compress takes
    ``build_indexes(scales)``.
    """
    state = _state_of(source, prefix, GaussianConditional)
    table = state.get("scale_table")
    if table is None or table.numel() == 0:
        raise ValueError("the GaussianConditional has no scale table yet: call the CompressAI model's update() "
                         "(or update_scale_table) first")
    table = table.detach().double().cpu().reshape(-1)
    bound = state.get("scale_bound")
    if bound is not None and bound.numel():
        # CompressAI's lower bound and featcodec's (the first table scale) are both float32 on float32 scales.
        if float(bound.float().reshape(-1)[0]) != float(table[0].float()):
            raise ValueError(f"scale_bound {float(bound.reshape(-1)[0])} differs from the smallest table scale "
                             f"{float(table[0])}: featcodec bounds scales by its smallest table scale")
    likelihood_bound = 1e-9
    if isinstance(source, GaussianConditional):
        likelihood_bound = float(source.likelihood_lower_bound.bound) if source.use_likelihood_bound else 0.0
    conditional = FeatcodecGaussianConditional(table.tolist(), likelihood_bound=likelihood_bound, precision=precision)
    if isinstance(source, nn.Module):
        conditional.train(source.training)
    if update_tables:
        conditional.update_tables()
    return conditional


def gaussian_conditional_from_featcodec(conditional: FeatcodecGaussianConditional) -> GaussianConditional:
    """A CompressAI GaussianConditional with a featcodec one's scale table, update()d.

    CompressAI keeps its table in float32: featcodec scales that are not
    float32 numbers are rounded (which moves the boundaries between tables
    by at most half a float32 step; the likelihoods do not use the table
    beyond its smallest scale, the bound).  The bound is the smallest scale.
    """
    if not isinstance(conditional, FeatcodecGaussianConditional):
        raise TypeError(f"expected a featcodec GaussianConditional, got {type(conditional).__name__}")
    scale_table = cast(torch.Tensor, conditional.scale_table)
    table = [float(s) for s in scale_table.float()]
    result = GaussianConditional(table, scale_bound=table[0], likelihood_bound=conditional.likelihood_bound,
                                 entropy_coder_precision=conditional.precision)
    result.update()
    return result.train(conditional.training)
