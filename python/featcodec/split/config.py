"""Run configs for ``featcodec search / train / evaluate``: a TOML file, checked on load.

Sections (every key optional unless marked; see examples/*.toml)::

    [network]
    name = "resnet50"           # required: a torchvision model name, or "digits" (the built-in CNN)
    weights = "resnet50.pt"     # a local state dict (torch.save); required except for "digits"
    split = "layer4.2"          # required: the module after which the network is cut
    num_classes = 1000
    kwargs = {}                 # more keyword arguments for the torchvision builder

    [data]
    kind = "imagefolder"        # "digits", "imagefolder" (one folder per class) or "coco"
    train = "train/"            # folders (imagefolder, coco images)
    val = "val/"
    train_annotations = "..."   # coco: instances_*.json
    val_annotations = "..."
    image_size = 224            # the network's input (centre crop; coco: resized square)
    resize = 256                # imagefolder: the shorter side before the crop
    limit_train = 0             # use only the first N items (0: all)
    limit_val = 0
    workers = 0                 # DataLoader workers

    [train]
    method = "bottleneck"       # a name in featcodec.split.runner.METHODS
    objective = "supervised"    # or "distillation" (no labels: match the network's last layer)
    loss = "cross_entropy"      # supervised: cross_entropy; distillation: "mse" or "mae"
    rate = "neural"             # "neural" (the hyperprior estimator), "factorized" or "l1"
    unit = "dws"                # a unit kind (featcodec.split.units.UNIT_KINDS)
    channels, stride, lam, q_step   # the point `featcodec train` trains
    optimizer, lr, momentum, weight_decay, step_size, gamma, epochs, batch_size, seed
    prior_epochs = 2            # epochs fitting the coding prior to a trained unit's code
    prior_images = 4096         # the prior is fitted to the code of at most this many training images
    device = "auto"             # "auto", "cpu" or "cuda"

    [search]
    preset = "cvpr2023-classification-supervised"   # featcodec.split.search.PRESETS
    channels, strides, q_step, log10_lambda           # override the preset's ranges
    trials = 20
    sampler = "random"          # "random" (Ahuja et al., CVPR 2023), "nsga2" or "tpe"
    seed = 0

    [baselines]
    codecs = ["jpeg", "webp", "avif"]
    qualities = [5, 10, 20, 40, 60, 80, 95]

    [method]                    # free-form options read by the chosen method

Relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .search import PRESETS, SearchSpace

PathLike = Union[str, pathlib.Path]

DATA_KINDS = ("digits", "imagefolder", "coco")
OBJECTIVES = ("supervised", "distillation")
LOSSES = {"supervised": ("cross_entropy",), "distillation": ("mse", "mae")}
RATES = ("neural", "hyperprior", "factorized", "l1")
SAMPLERS = ("random", "nsga2", "tpe")
IMAGE_CODECS = ("jpeg", "webp", "avif")


@dataclass
class NetworkConfig:
    name: str
    split: str
    weights: Optional[pathlib.Path] = None
    num_classes: Optional[int] = None
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    kind: str = "digits"
    train: Optional[pathlib.Path] = None
    val: Optional[pathlib.Path] = None
    train_annotations: Optional[pathlib.Path] = None
    val_annotations: Optional[pathlib.Path] = None
    image_size: int = 224
    resize: int = 256
    limit_train: int = 0
    limit_val: int = 0
    workers: int = 0


@dataclass
class TrainSection:
    method: str = "bottleneck"
    objective: str = "supervised"
    loss: str = "cross_entropy"
    rate: str = "neural"
    unit: str = "dws"
    channels: int = 64
    stride: int = 2
    lam: float = 1.0
    q_step: float = 1.0
    optimizer: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 0.0
    step_size: Optional[int] = 15
    gamma: float = 0.1
    epochs: int = 30
    batch_size: int = 96
    seed: int = 0
    prior_epochs: int = 2
    prior_images: int = 4096
    device: str = "auto"


@dataclass
class SearchSection:
    preset: Optional[str] = None
    channels: Optional[Tuple[int, ...]] = None
    strides: Optional[Tuple[int, ...]] = None
    q_step: Optional[Tuple[float, float]] = None
    log10_lambda: Optional[Tuple[float, float]] = None
    trials: int = 20
    sampler: str = "random"
    seed: int = 0

    def space(self) -> SearchSpace:
        """The preset with this section's overrides."""
        if self.preset is None and (self.channels is None or self.log10_lambda is None):
            raise ValueError("[search] needs a preset or at least channels and log10_lambda")
        base = PRESETS[self.preset] if self.preset is not None else SearchSpace(channels=tuple(self.channels or ()))
        overrides = {k: getattr(self, k) for k in ("channels", "strides", "q_step", "log10_lambda")
                     if getattr(self, k) is not None}
        return dataclasses.replace(base, **overrides)


@dataclass
class BaselineSection:
    codecs: Tuple[str, ...] = ()
    qualities: Tuple[int, ...] = (5, 10, 20, 40, 60, 80, 95)


@dataclass
class RunConfig:
    network: NetworkConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSection = field(default_factory=TrainSection)
    search: SearchSection = field(default_factory=SearchSection)
    baselines: BaselineSection = field(default_factory=BaselineSection)
    method: Dict[str, Any] = field(default_factory=dict)
    source: Optional[pathlib.Path] = None

    @property
    def name(self) -> str:
        return self.source.stem if self.source is not None else "run"


def _toml_module() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
        return tomllib
    import tomli  # the same parser, for Python 3.9 and 3.10
    return tomli


def load_config(path: PathLike) -> RunConfig:
    """Reads and checks a TOML run config; ValueError names the bad key."""
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        try:
            raw = _toml_module().load(f)
        except Exception as error:  # tomllib.TOMLDecodeError and tomli's are distinct classes
            raise ValueError(f"{path}: not valid TOML: {error}") from error
    return parse_config(raw, base=path.parent, source=path)


def parse_config(raw: Mapping[str, Any], base: PathLike = ".", source: Optional[pathlib.Path] = None) -> RunConfig:
    """A :class:`RunConfig` from parsed TOML (a dict); relative paths are taken from ``base``."""
    base = pathlib.Path(base)
    unknown = set(raw) - {"network", "data", "train", "search", "baselines", "method"}
    if unknown:
        raise ValueError(f"unknown config sections: {sorted(unknown)}")
    if "network" not in raw:
        raise ValueError("the config needs a [network] section")
    config = RunConfig(
        network=_section(NetworkConfig, raw["network"], "network", base),
        data=_section(DataConfig, raw.get("data", {}), "data", base),
        train=_section(TrainSection, raw.get("train", {}), "train", base),
        search=_section(SearchSection, raw.get("search", {}), "search", base),
        baselines=_section(BaselineSection, raw.get("baselines", {}), "baselines", base),
        method=dict(raw.get("method", {})),
        source=source,
    )
    _check(config)
    return config


_PATH_FIELDS = {"weights", "train", "val", "train_annotations", "val_annotations"}


def _section(cls: Any, values: Any, name: str, base: pathlib.Path) -> Any:
    if not isinstance(values, Mapping):
        raise ValueError(f"[{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"[{name}]: unknown keys {sorted(unknown)}; known: {sorted(fields)}")
    missing = [f.name for f in fields.values()
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
               and f.name not in values]
    if missing:
        raise ValueError(f"[{name}]: missing required keys {missing}")
    converted: Dict[str, Any] = {}
    for key, value in values.items():
        if key in _PATH_FIELDS and cls is not TrainSection and value is not None:
            if not isinstance(value, str):
                raise ValueError(f"[{name}] {key} must be a path string, got {value!r}")
            converted[key] = (base / value) if not pathlib.Path(value).is_absolute() else pathlib.Path(value)
        elif isinstance(value, list):
            converted[key] = tuple(value)
        else:
            converted[key] = value
    return cls(**converted)


def _positive(section: str, **values: Any) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"[{section}] {key} must be a positive number, got {value!r}")


def _check(config: RunConfig) -> None:
    network, data, train, search, baselines = (config.network, config.data, config.train, config.search,
                                               config.baselines)
    if not isinstance(network.name, str) or not isinstance(network.split, str):
        raise ValueError("[network] name and split must be strings")
    if network.name != "digits" and network.weights is None:
        raise ValueError(f"[network] weights: a local state dict is needed for {network.name!r} "
                         "(nothing is downloaded)")
    if data.kind not in DATA_KINDS:
        raise ValueError(f"[data] kind must be one of {DATA_KINDS}, got {data.kind!r}")
    if data.kind in ("imagefolder", "coco") and (data.train is None or data.val is None):
        raise ValueError(f"[data] {data.kind} needs train and val folders")
    if data.kind == "coco" and (data.train_annotations is None or data.val_annotations is None):
        raise ValueError("[data] coco needs train_annotations and val_annotations")
    _positive("data", image_size=data.image_size, resize=data.resize)
    if train.objective not in OBJECTIVES:
        raise ValueError(f"[train] objective must be one of {OBJECTIVES}, got {train.objective!r}")
    if train.loss not in LOSSES[train.objective]:
        raise ValueError(f"[train] loss {train.loss!r} does not fit the {train.objective} objective; "
                         f"choose from {LOSSES[train.objective]}")
    if train.rate not in RATES:
        raise ValueError(f"[train] rate must be one of {RATES}, got {train.rate!r}")
    if train.optimizer not in ("sgd", "adam"):
        raise ValueError(f"[train] optimizer must be 'sgd' or 'adam', got {train.optimizer!r}")
    if train.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"[train] device must be 'auto', 'cpu' or 'cuda', got {train.device!r}")
    _positive("train", channels=train.channels, stride=train.stride, lam=train.lam, q_step=train.q_step,
              lr=train.lr, epochs=train.epochs, batch_size=train.batch_size, prior_epochs=train.prior_epochs,
              prior_images=train.prior_images)
    if search.sampler not in SAMPLERS:
        raise ValueError(f"[search] sampler must be one of {SAMPLERS}, got {search.sampler!r}")
    if search.preset is not None and search.preset not in PRESETS:
        raise ValueError(f"[search] unknown preset {search.preset!r}; known: {sorted(PRESETS)}")
    _positive("search", trials=search.trials)
    if search.preset is not None or search.channels is not None:
        search.space()  # checks the ranges
    bad = [c for c in baselines.codecs if c not in IMAGE_CODECS]
    if bad:
        raise ValueError(f"[baselines] unknown codecs {bad}; known: {IMAGE_CODECS}")
    if any(isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= 100 for q in baselines.qualities):
        raise ValueError(f"[baselines] qualities must be integers in [0, 100], got {baselines.qualities}")


__all__ = ["BaselineSection", "DataConfig", "NetworkConfig", "RunConfig", "SearchSection", "TrainSection",
           "load_config", "parse_config"]
