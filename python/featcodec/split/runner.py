"""``featcodec search / train / evaluate``: the papers' experiments from a config file.

A run (Ahuja et al., CVPR 2023, section 2.2 and supplementary) cuts a
pretrained network at a split point, trains only a bottleneck there for
each point (C_r, S, lambda, Q) that an Optuna study proposes, codes the
validation set one message per image to measure the true bpp (every byte
the receiver needs: header, payload, checksum), and keeps the Pareto
frontier of (task metric, true bpp).  The config format is in
:mod:`featcodec.split.config`; examples are in the repository's examples/.

Outputs (``--out DIR``, written by rank 0 only):

``trials.csv``
    every trial of the study (and the image-codec baselines, kind "baseline");
``frontier.csv``
    the study's Pareto-optimal trials (``study.best_trials``), by bpp;
``metric_vs_bpp.png``
    metric against true bpp: trials, the frontier, the baselines, the network;
``trials/NNNN/``
    each trial's unit, rate term and coding prior (safetensors) and ``params.json``;
``bank/frontier.fcbank``
    the frontier as a :class:`featcodec.bank.RateBank` (:func:`export_frontier`),
    with ``bank/units.json`` mapping its unit ids to trials;
``study.db``
    the study (SQLite) unless ``--storage`` names another.

Methods
-------
What is trained at the cut is a *method*, chosen by name in the config
(``[train] method = "bottleneck"``, the default) from :data:`METHODS`; add
one with :func:`register_method`.  A method is a class with a no-argument
constructor and these methods (see :class:`Method`; :class:`BottleneckMethod`
is the reference):

``suggest(trial, run) -> dict``
    one trial's hyper-parameters, drawn with ``trial.suggest_*`` (an Optuna
    trial; the space usually comes from ``run.config.search.space()``).
    JSON-serializable values only: they are broadcast to every rank and
    written to ``params.json``.
``fixed(run) -> dict``
    the hyper-parameters ``featcodec train`` uses (from the ``[train]`` and
    ``[method]`` sections).
``fit(run, params, folder) -> trained``
    trains on every rank (``run.dist``; pass it to :class:`Trainer` for
    DDP) and returns whatever the method needs later; ``folder`` is where
    a resumable training checkpoint may go (rank 0 writes).
``measure(run, trained) -> Measurement``
    rank 0 only: the task metric through real bitstreams and their true bpp.
``save(trained, folder)`` / ``load(run, params, folder) -> trained``
    the trained state as safetensors (no pickles) beside ``params.json``.
``codec(trained) -> FeatureCodec``
    what the rate bank stores for a frontier point.

The runner owns the study, the checkpoint folders, the CSVs, the plot and
the export; a method never writes outside ``folder``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import pathlib
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .config import RunConfig, load_config
from .cut import feature_of, split, with_feature
from .distributed import Distributed, broadcast_object, init_from_env, shutdown
from .model import SplitModel
from .rate import make_rate
from .train import TrainConfig, Trainer, evaluate, logits_of
from .units import make_unit, parameter_count

PathLike = Union[str, pathlib.Path]


# --- data and network ---------------------------------------------------------------------------------------


@dataclass
class DataSource:
    """The datasets a run needs: training and validation (tensor, target) and the raw validation images."""

    train: Dataset
    val: Dataset
    val_images: Dataset            # (PIL image at the network's input geometry, target): for image codecs
    to_input: Callable[[Any], torch.Tensor]
    task: str                      # "classification" or "segmentation"
    num_classes: int

    @property
    def metric(self) -> str:
        return "accuracy" if self.task == "classification" else "miou"


class _Mapped(Dataset):
    def __init__(self, base: Dataset, function: Callable[[Any], Any]) -> None:
        self.base, self.function = base, function

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.function(self.base[index])


def _limit(dataset: Dataset, count: int) -> Dataset:
    return Subset(dataset, range(min(count, len(dataset)))) if count else dataset  # type: ignore[arg-type]


def _digits_to_input(image: Any) -> torch.Tensor:
    from torchvision.transforms import functional as TF

    return (TF.to_tensor(image) - 0.5) / 0.5


def _digits_to_image(item: Tuple[torch.Tensor, Any]) -> Tuple[Any, Any]:
    from PIL import Image

    tensor, label = item
    pixels = ((tensor * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels, "RGB"), label


def build_data(config: RunConfig) -> DataSource:
    """The datasets the config names (nothing is downloaded)."""
    from torchvision import transforms

    from . import data as local

    d = config.data
    if d.kind == "digits":
        from .demo import digits_datasets

        digits_train, digits_val = digits_datasets()
        val = _limit(digits_val, d.limit_val)
        return DataSource(_limit(digits_train, d.limit_train), val, _Mapped(val, _digits_to_image),
                          _digits_to_input, "classification", 10)
    normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize(local.IMAGENET_MEAN,
                                                                                local.IMAGENET_STD)])
    if d.kind == "imagefolder":
        geometry = transforms.Compose([transforms.Resize(d.resize), transforms.CenterCrop(d.image_size)])
        assert d.train is not None and d.val is not None  # checked by the config
        folder_train = local.image_folder(d.train, transforms.Compose([geometry, normalize]))
        folder_val = local.image_folder(d.val, transforms.Compose([geometry, normalize]))
        folder_images = local.image_folder(d.val, lambda image: geometry(image.convert("RGB")))
        classes = config.network.num_classes or len(folder_val.classes)  # type: ignore[attr-defined]
        return DataSource(_limit(folder_train, d.limit_train), _limit(folder_val, d.limit_val),
                          _limit(folder_images, d.limit_val), normalize, "classification", classes)
    size = (d.image_size, d.image_size)

    def resized(image: Any, mask: Any) -> Tuple[Any, torch.Tensor]:
        import numpy as np
        from PIL import Image

        return (image.resize(size[::-1], Image.Resampling.BILINEAR),
                torch.from_numpy(np.array(mask.resize(size[::-1], Image.Resampling.NEAREST), dtype=np.int64)))

    def tensors(image: Any, mask: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        image, target = resized(image, mask)
        return normalize(image), target

    assert d.train is not None and d.val is not None and d.train_annotations is not None
    assert d.val_annotations is not None  # all checked by the config
    coco_train = local.CocoSegmentation(d.train, d.train_annotations, transform=tensors)
    coco_val = local.CocoSegmentation(d.val, d.val_annotations, transform=tensors)
    coco_images = local.CocoSegmentation(d.val, d.val_annotations, transform=resized)  # type: ignore[arg-type]
    return DataSource(_limit(coco_train, d.limit_train), _limit(coco_val, d.limit_val),
                      _limit(coco_images, d.limit_val), normalize, "segmentation", config.network.num_classes or 21)


def build_network(config: RunConfig, data: Optional[DataSource] = None) -> nn.Module:
    """The pretrained network: a torchvision builder with random weights, then the local state dict."""
    import torchvision

    from . import data as local

    n = config.network
    if n.name == "digits":
        from .demo import DigitsNet, default_cache_dir, digits_datasets, trained_classifier

        if n.weights is not None:
            return local.load_weights(DigitsNet(), n.weights).eval()
        epochs = int(n.kwargs.get("epochs", 12))
        return trained_classifier(digits_datasets()[0], default_cache_dir(), epochs, progress=False)
    kwargs = dict(n.kwargs)
    if n.num_classes is not None:
        kwargs["num_classes"] = n.num_classes
    if n.name in torchvision.models.list_models(module=torchvision.models.segmentation):
        kwargs.setdefault("weights_backbone", None)
        kwargs.setdefault("aux_loss", False)
    try:
        model = torchvision.models.get_model(n.name, weights=None, **kwargs)
    except ValueError as error:
        raise ValueError(f"[network] name: {error}") from error
    state = torch.load(n.weights, map_location="cpu", weights_only=True)  # type: ignore[arg-type]
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if getattr(model, "aux_classifier", "absent") is None:
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    model.load_state_dict(state)
    return model.eval()


@dataclass
class Run:
    """Everything a method needs: the config, the cut network, the data, where this process stands."""

    config: RunConfig
    dist: Distributed
    network: nn.Module
    head: nn.Module
    tail: nn.Module
    data: DataSource
    feature_shape: Tuple[int, int, int]
    progress: bool = False

    @classmethod
    def build(cls, config: RunConfig, dist: Optional[Distributed] = None, progress: bool = False) -> "Run":
        if dist is None:
            dist = init_from_env(None if config.train.device == "auto" else config.train.device)
        data = build_data(config)
        network = build_network(config, data).to(dist.device)
        head, tail = split(network, config.network.split, single_tensor=True)
        with torch.no_grad():
            sample = data.val[0][0].unsqueeze(0).to(dist.device)
            shape = tuple(feature_of(head(sample)).shape[1:])
        return cls(config, dist, network, head, tail, data, shape, progress)  # type: ignore[arg-type]

    @property
    def device(self) -> torch.device:
        return self.dist.device

    def train_loader(self, batch_size: int) -> DataLoader:
        """This rank's share of each global batch of ``batch_size`` (see featcodec.split.distributed)."""
        from torch.utils.data.distributed import DistributedSampler

        sampler: DistributedSampler = DistributedSampler(self.data.train, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                     shuffle=True, seed=self.config.train.seed, drop_last=self.dist.active)
        return DataLoader(self.data.train, batch_size=self.dist.local_batch(batch_size), sampler=sampler,
                          num_workers=self.config.data.workers)

    def val_loader(self, batch_size: int = 32) -> DataLoader:
        return DataLoader(self.data.val, batch_size=batch_size, num_workers=self.config.data.workers)


# --- methods ----------------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One trained point measured on the validation set.

    ``metric``: through the real bitstreams; ``true_bpp``: their bytes x 8 /
    input pixels; ``estimated_bpp``: the training rate estimator's (None
    when it is not in bits); ``extra``: anything else worth a CSV column.
    """

    metric: float
    true_bpp: float
    estimated_bpp: Optional[float] = None
    extra: Dict[str, float] = field(default_factory=dict)


class Method:
    """The interface a runner method implements (see the module docstring)."""

    def suggest(self, trial: Any, run: Run) -> Dict[str, Any]:
        raise NotImplementedError

    def fixed(self, run: Run) -> Dict[str, Any]:
        raise NotImplementedError

    def fit(self, run: Run, params: Dict[str, Any], folder: pathlib.Path) -> Any:
        raise NotImplementedError

    def measure(self, run: Run, trained: Any) -> Measurement:
        raise NotImplementedError

    def save(self, trained: Any, folder: pathlib.Path) -> None:
        raise NotImplementedError

    def load(self, run: Run, params: Dict[str, Any], folder: pathlib.Path) -> Any:
        raise NotImplementedError

    def codec(self, trained: Any) -> Any:
        raise NotImplementedError


@dataclass
class TrainedBottleneck:
    model: SplitModel
    prior: Any                    # FactorizedPrior with its tables built
    params: Dict[str, Any]
    feature_shape: Tuple[int, int, int]
    split: str
    network: str


class BottleneckMethod(Method):
    """Ahuja et al., CVPR 2023: a bottleneck unit trained with the network frozen, coded with a fitted prior.

    The rate term in training is the config's (``neural``: the hyperprior
    estimator; ``l1``: the L1 proxy of Datta et al., ICPR 2022); the bits
    are always those of a FactorizedPrior fitted to the trained unit's code
    (the hyperprior serves only the training loss).
    """

    def suggest(self, trial: Any, run: Run) -> Dict[str, Any]:
        point = run.config.search.space().suggest(trial)
        return {**self.fixed(run), "channels": point.channels, "stride": point.stride, "lam": point.lam,
                "q_step": point.q_step}

    def fixed(self, run: Run) -> Dict[str, Any]:
        t = run.config.train
        return {"unit": t.unit, "rate": t.rate, "objective": t.objective, "loss": t.loss, "channels": t.channels,
                "stride": t.stride, "lam": t.lam, "q_step": t.q_step}

    def build(self, run: Run, params: Dict[str, Any]) -> SplitModel:
        rate_name = "hyperprior" if params["rate"] == "neural" else params["rate"]
        unit = make_unit(params["unit"], run.feature_shape[0], int(params["channels"]), int(params["stride"]))
        return SplitModel(run.head, unit, make_rate(rate_name, int(params["channels"])), run.tail,
                          q_step=float(params["q_step"])).to(run.device)

    def fit(self, run: Run, params: Dict[str, Any], folder: pathlib.Path) -> TrainedBottleneck:
        t = run.config.train
        torch.manual_seed(t.seed)
        model = self.build(run, params)
        distill = params["objective"] == "distillation"
        config = TrainConfig(objective="unsupervised" if distill else "supervised",
                             distill_loss=params["loss"] if distill else "mse", lam=float(params["lam"]),
                             epochs=t.epochs, optimizer=t.optimizer, lr=t.lr, momentum=t.momentum,
                             weight_decay=t.weight_decay, step_size=t.step_size, gamma=t.gamma, seed=t.seed,
                             progress=run.progress and run.dist.is_main)
        Trainer(model, config, checkpoint=folder / "train.pt", device=run.device, distributed=run.dist).fit(
            run.train_loader(t.batch_size))
        model.eval()
        prior = fit_coding_prior(run, model, t.prior_epochs) if run.dist.is_main else None
        return self._trained(run, model, prior, params)

    @staticmethod
    def _trained(run: Run, model: SplitModel, prior: Any, params: Dict[str, Any]) -> TrainedBottleneck:
        return TrainedBottleneck(model, prior, params, run.feature_shape, run.config.network.split,
                                 run.config.network.name)

    def codec(self, trained: TrainedBottleneck) -> Any:
        """The codec as a rate bank holds it (feature shape known to both ends: a one-byte header),
        so the true bpp measured is that of the messages the bank sends."""
        from ..codec import FeatureCodec

        unit: Any = trained.model.unit
        return FeatureCodec(unit.encoder, unit.decoder, trained.prior, trained.model.q_step,
                            feature_shape=trained.feature_shape, split=trained.split, network=trained.network)

    def measure(self, run: Run, trained: TrainedBottleneck) -> Measurement:
        loader = run.val_loader()
        forward = evaluate(trained.model, loader, num_classes=run.data.num_classes, device=run.device)
        coded = CodedNetwork(run.head, self.codec(trained), run.tail)
        through_bits = evaluate(coded, loader, num_classes=run.data.num_classes, device=run.device)
        estimated = forward.get("rate_per_pixel") if trained.model.rate.in_bits else None
        metric = run.data.metric
        return Measurement(through_bits[metric], coded.bits / coded.pixels, estimated,
                           {"forward_metric": forward[metric], "prior_bpp": coded.prior_bits / coded.pixels,
                            "parameters": float(parameter_count(trained.model.unit))})

    def save(self, trained: TrainedBottleneck, folder: pathlib.Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        for name, module in (("unit", trained.model.unit), ("rate", trained.model.rate), ("prior", trained.prior)):
            save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                      str(folder / f"{name}.safetensors"))
        (folder / "params.json").write_text(json.dumps(trained.params, indent=1, sort_keys=True))

    def load(self, run: Run, params: Dict[str, Any], folder: pathlib.Path) -> TrainedBottleneck:
        from safetensors.torch import load_file

        from ..entropy import FactorizedPrior

        model = self.build(run, params).eval()
        prior = FactorizedPrior(int(params["channels"])).to(run.device)
        for name, module in (("unit", model.unit), ("rate", model.rate), ("prior", prior)):
            module.load_state_dict(load_file(str(folder / f"{name}.safetensors"), device=str(run.device)))
        prior.eval().update_tables()
        return self._trained(run, model, prior, params)


METHODS: Dict[str, Type[Method]] = {"bottleneck": BottleneckMethod}
"""Runner methods by the name a config gives in ``[train] method``."""


def register_method(name: str, method: Type[Method]) -> None:
    """Adds a runner method (a :class:`Method` subclass) under ``name``."""
    if name in METHODS:
        raise ValueError(f"runner method {name!r} is already registered")
    METHODS[name] = method


def method_of(config: RunConfig) -> Method:
    if config.train.method not in METHODS:
        raise ValueError(f"[train] unknown method {config.train.method!r}; known: {sorted(METHODS)}")
    return METHODS[config.train.method]()


def fit_coding_prior(run: Run, model: SplitModel, epochs: int) -> Any:
    """A FactorizedPrior fitted to the trained unit's code, tables built (:func:`featcodec.codec.fit_prior`).

    The code of at most ``[train] prior_images`` training images is computed
    once (head and encoder in eval mode) and the prior's epochs run over
    it: a per-channel density needs far fewer samples than the unit's
    training, and the head is not run again for every epoch.
    """
    from ..codec import fit_prior

    unit: Any = model.unit
    t = run.config.train
    count = min(len(run.data.train), t.prior_images)  # type: ignore[arg-type]
    loader = DataLoader(Subset(run.data.train, range(count)), batch_size=t.batch_size,
                        num_workers=run.config.data.workers)
    codes = []
    with torch.no_grad():
        for batch in loader:
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            codes.append(unit.encode(feature_of(run.head(images.to(run.device)))))
    return fit_prior(nn.Identity(), torch.cat(codes), model.q_step, epochs=epochs, batch_size=t.batch_size,
                     seed=t.seed, progress=False)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Runs torch on one thread inside: coding one image's message is a chain of tiny ops, and a thread
    pool's hand-offs cost more than they compute (on a shared 2-core machine, ten times over)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class CodedNetwork(nn.Module):
    """head -> one message per image through ``codec`` -> decode -> tail; counts every byte.

    ``bits``: all messages' bytes x 8; ``pixels``: the input pixels coded;
    ``prior_bits``: the coding prior's own estimate of the same codes.
    """

    def __init__(self, head: nn.Module, codec: Any, tail: nn.Module) -> None:
        super().__init__()
        self.head, self.tail, self.codec = head, tail, codec
        self.bits = self.pixels = 0
        self.prior_bits = 0.0

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> Any:
        from ..entropy import estimate_bits

        crossing = self.head(x)
        feature = feature_of(crossing)
        outputs = []
        for i in range(feature.shape[0]):
            with one_thread():
                data = self.codec.encode(feature[i:i + 1])
                decoded = self.codec.decode(data)
            self.bits += 8 * len(data)
            outputs.append(logits_of(self.tail(with_feature(crossing, decoded))))
        code = self.codec.encoder(feature)
        self.prior_bits += float(estimate_bits(self.codec.entropy_model(code, q_step=self.codec.q_step)[1]))
        self.pixels += x.shape[0] * x.shape[-2] * x.shape[-1]
        return torch.cat(outputs)


# --- the study ----------------------------------------------------------------------------------------------


def make_sampler(name: str, seed: int) -> Any:
    if name == "random":
        return TrialSeededRandomSampler(seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; known: random, nsga2, tpe")


class TrialSeededRandomSampler(optuna.samplers.BaseSampler):
    """Random search whose draws depend only on (seed, trial number, parameter name).

    Optuna's RandomSampler draws from one generator per process, so workers
    started with one seed would repeat each other's points; here trial k
    gets the same point whichever process runs it, and reruns reproduce.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def infer_relative_search_space(self, study: Any, trial: Any) -> Dict[str, Any]:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Dict[str, Any]:
        return {}

    def sample_independent(self, study: Any, trial: Any, param_name: str, distribution: Any) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        rng = np.random.default_rng([self.seed, trial.number, zlib.crc32(param_name.encode())])
        if isinstance(distribution, CategoricalDistribution):
            return distribution.choices[int(rng.integers(len(distribution.choices)))]
        if isinstance(distribution, IntDistribution):
            steps = (distribution.high - distribution.low) // distribution.step
            return distribution.low + distribution.step * int(rng.integers(steps + 1))
        if isinstance(distribution, FloatDistribution):
            low, high = distribution.low, distribution.high
            if distribution.log:
                return float(math.exp(rng.uniform(math.log(low), math.log(high))))
            return float(rng.uniform(low, high))
        raise TypeError(f"unsupported distribution {distribution!r}")


def open_storage(storage: Optional[str], out: pathlib.Path) -> Any:
    """The study's storage: None -> SQLite in ``out``; "memory"; "journal:PATH"; or any Optuna RDB URL."""
    if storage == "memory":
        return None
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{(out / 'study.db').resolve()}"
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(storage[len("journal:"):]))
    engine = {"connect_args": {"timeout": 120}} if storage.startswith("sqlite") else None
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(storage, engine_kwargs=engine)
        except Exception:  # two workers creating one database's tables at once: the loser retries
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def open_study(config: RunConfig, out: pathlib.Path, storage: Optional[str] = None, study_name: Optional[str] = None,
               sampler: Optional[str] = None) -> Any:
    """Creates the study or loads it (so ``--trials N`` adds N to what is there)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=study_name or config.name, storage=open_storage(storage, out),
        sampler=make_sampler(sampler or config.search.sampler, config.search.seed),
        directions=["maximize", "minimize"], load_if_exists=True)


def search(config: RunConfig, out: PathLike, trials: Optional[int] = None, storage: Optional[str] = None,
           study_name: Optional[str] = None, sampler: Optional[str] = None, baselines: bool = True,
           progress: bool = False, run: Optional[Run] = None) -> Any:
    """Adds ``trials`` (default: the config's) trials to the study, then writes the outputs from the
    whole study.  Every rank trains each trial; rank 0 asks, measures, tells and writes.
    Returns the study on rank 0, None elsewhere."""
    out = pathlib.Path(out)
    run = run or Run.build(config, progress=progress)
    method = method_of(config)
    study = open_study(config, out, storage, study_name, sampler) if run.dist.is_main else None
    for _ in range(config.search.trials if trials is None else trials):
        trial = study.ask() if study is not None else None
        proposal = (method.suggest(trial, run), trial.number) if trial is not None else None
        shared: Any = broadcast_object(run.dist, proposal)
        params: Dict[str, Any] = shared[0]
        number: int = shared[1]
        folder = out / "trials" / f"{number:04d}"
        if run.dist.is_main and (folder / "train.pt").exists():
            (folder / "train.pt").unlink()  # left by another study in this folder: never resume from it
        run.dist.barrier()
        started = time.perf_counter()
        try:
            trained = method.fit(run, params, folder)
            if study is not None:
                measured = method.measure(run, trained)
                method.save(trained, folder)
                _record(trial, params, measured, folder, time.perf_counter() - started)
                study.tell(trial, [measured.metric, measured.true_bpp])
        except BaseException:
            if study is not None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        run.dist.barrier()
    if study is not None:
        write_outputs(run, study, out, baselines=baselines)
    return study


def _record(trial: Any, params: Dict[str, Any], measured: Measurement, folder: pathlib.Path, seconds: float) -> None:
    trial.set_user_attr("params", params)
    trial.set_user_attr("estimated_bpp", measured.estimated_bpp)
    trial.set_user_attr("extra", measured.extra)
    trial.set_user_attr("checkpoint", str(folder))
    trial.set_user_attr("seconds", seconds)


# --- outputs ---------------------------------------------------------------------------------------------------

COLUMNS = ("kind", "trial", "method", "objective", "rate", "unit", "channels", "stride", "lam", "q_step",
           "codec", "quality", "metric", "true_bpp", "estimated_bpp", "prior_bpp", "forward_metric", "parameters",
           "seconds", "checkpoint")


def trial_rows(study: Any, method: str) -> List[Dict[str, Any]]:
    """One row per complete trial of the study."""
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        attrs = trial.user_attrs
        params, extra = attrs.get("params", {}), attrs.get("extra", {})
        rows.append({"kind": "trial", "trial": trial.number, "method": method, **{
            k: params.get(k) for k in ("objective", "rate", "unit", "channels", "stride", "lam", "q_step")},
            "metric": trial.values[0], "true_bpp": trial.values[1], "estimated_bpp": attrs.get("estimated_bpp"),
            "prior_bpp": extra.get("prior_bpp"), "forward_metric": extra.get("forward_metric"),
            "parameters": extra.get("parameters"), "seconds": attrs.get("seconds"),
            "checkpoint": attrs.get("checkpoint")})
    return rows


def frontier_rows(study: Any, method: str) -> List[Dict[str, Any]]:
    """The study's Pareto-optimal trials (``study.best_trials``), by increasing bpp."""
    best = {t.number for t in study.best_trials}
    rows = [r for r in trial_rows(study, method) if r["trial"] in best]
    return sorted(rows, key=lambda r: (r["true_bpp"], -r["metric"]))


def write_csv(path: pathlib.Path, rows: Sequence[Dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})


def read_csv(path: PathLike) -> List[Dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def baseline_rows(run: Run, out: pathlib.Path) -> List[Dict[str, Any]]:
    """The image-codec sweep of the config, computed once per run folder (``baselines.csv``)."""
    cached = out / "baselines.csv"
    if cached.exists():
        return [dict(r) for r in read_csv(cached)]
    from .baselines import sweep

    b = run.config.baselines
    if not b.codecs:
        return []
    points = sweep(run.network, run.data.val_images, run.data.to_input, b.codecs, b.qualities, run.data.metric,
                   run.data.num_classes, device=run.device)
    rows = [{"kind": "baseline", "method": p.codec, "codec": p.codec, "quality": p.quality, "metric": p.metric,
             "true_bpp": p.bpp} for p in points]
    write_csv(cached, rows)
    return rows


def write_outputs(run: Run, study: Any, out: pathlib.Path, baselines: bool = True) -> Dict[str, Any]:
    """trials.csv, frontier.csv, the plot and the bank, from the whole study (rank 0)."""
    method = run.config.train.method
    trials, frontier = trial_rows(study, method), frontier_rows(study, method)
    extra = baseline_rows(run, out) if baselines else []
    reference = evaluate(run.network, run.val_loader(), num_classes=run.data.num_classes,
                         device=run.device)[run.data.metric]
    write_csv(out / "trials.csv", trials + extra)
    write_csv(out / "frontier.csv", frontier)
    plot(trials, frontier, extra, reference, out / "metric_vs_bpp.png", run.data.metric,
         f"{run.config.network.name} at {run.config.network.split}")
    method_impl = method_of(run.config)
    entries, missing = [], []
    for row in frontier:
        folder = pathlib.Path(row["checkpoint"])
        if not (folder / "params.json").exists():  # a worker on another machine, without a shared disk
            missing.append(row["trial"])
            continue
        trained = method_impl.load(run, json.loads((folder / "params.json").read_text()), folder)
        entries.append((method_impl.codec(trained), row))
    if missing:
        print(f"featcodec: frontier trials {missing} are not in this machine's folders; the bank leaves them out")
    bank = export_frontier(run, entries, out / "bank") if entries else None
    return {"trials": trials, "frontier": frontier, "baselines": extra, "reference": reference, "bank": bank}


def export_frontier(run: Run, entries: Sequence[Tuple[Any, Dict[str, Any]]],
                    folder: pathlib.Path) -> Optional[pathlib.Path]:
    """Writes the frontier's codecs, by increasing bpp, as one rate bank file: ``folder/frontier.fcbank``
    (:class:`featcodec.bank.RateBank`; ``units.json`` maps its units to frontier rows).  A bank holds at
    most :data:`featcodec.bank.MAX_UNITS` units; a longer frontier is thinned to that many points spread
    evenly over its rows (ends kept).  Codecs without an entropy model are left out; None when none is left."""
    from ..bank import MAX_UNITS, RateBank

    folder.mkdir(parents=True, exist_ok=True)
    # Codecs without an entropy model (CR+BQ's raw 8-bit codes) have nothing a rate bank could hold.
    entries = [(codec, row) for codec, row in entries if getattr(codec, "entropy_model", None) is not None]
    if len(entries) > MAX_UNITS:
        picks = sorted({round(i * (len(entries) - 1) / (MAX_UNITS - 1)) for i in range(MAX_UNITS)})
        entries = [entries[i] for i in picks]
    if not entries:
        return None
    bank = RateBank(feature_shape=run.feature_shape, split=run.config.network.split, network=run.config.network.name)
    for codec, row in entries:
        bank.add(codec, bpp=float(row["true_bpp"]), metric=float(row["metric"]))
    path = folder / "frontier.fcbank"
    bank.save(path)
    (folder / "units.json").write_text(json.dumps(
        [{"unit": i, "trial": row.get("trial"), "true_bpp": float(row["true_bpp"]), "metric": float(row["metric"]),
          "checkpoint": row.get("checkpoint")} for i, (_, row) in enumerate(entries)], indent=1))
    return path


def plot(trials: Sequence[Dict[str, Any]], frontier: Sequence[Dict[str, Any]], baselines: Sequence[Dict[str, Any]],
         reference: float, path: pathlib.Path, metric: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    axes.scatter([float(r["true_bpp"]) for r in trials], [float(r["metric"]) for r in trials], s=14, color="0.6",
                 label="trials")
    axes.plot([float(r["true_bpp"]) for r in frontier], [float(r["metric"]) for r in frontier], "o-",
              color="C0", label="Pareto frontier")
    for codec in sorted({r["codec"] for r in baselines}):
        points = sorted((float(r["true_bpp"]), float(r["metric"])) for r in baselines if r["codec"] == codec)
        axes.plot([p[0] for p in points], [p[1] for p in points], "s--", markersize=3, label=codec.upper())
    axes.axhline(reference, color="k", linestyle=":", label="network")
    axes.set_xscale("log")
    axes.set_xlabel("true bpp (bytes of one message per image x 8 / input pixels)")
    axes.set_ylabel(metric)
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --- train and evaluate ----------------------------------------------------------------------------------------


def train(config: RunConfig, out: PathLike, progress: bool = False, run: Optional[Run] = None) -> Optional[Dict[str, Any]]:
    """Trains the config's one point (``[train]``) into ``out/unit``; resumes from its checkpoint.
    Returns the measurement row on rank 0."""
    out = pathlib.Path(out)
    run = run or Run.build(config, progress=progress)
    method = method_of(config)
    params = method.fixed(run)
    folder = out / "unit"
    trained = method.fit(run, params, folder)
    row = None
    if run.dist.is_main:
        measured = method.measure(run, trained)
        method.save(trained, folder)
        row = _row(config, params, measured, folder)
        write_csv(out / "train.csv", [row])
    run.dist.barrier()
    return row


def _row(config: RunConfig, params: Dict[str, Any], measured: Measurement, folder: pathlib.Path) -> Dict[str, Any]:
    return {"kind": "trial", "method": config.train.method, **params, "metric": measured.metric,
            "true_bpp": measured.true_bpp, "estimated_bpp": measured.estimated_bpp, **measured.extra,
            "checkpoint": str(folder)}


def evaluate_run(config: RunConfig, out: PathLike, checkpoints: Sequence[PathLike] = (), baselines: bool = True,
                 run: Optional[Run] = None) -> List[Dict[str, Any]]:
    """Measures saved units again (``checkpoints``, default: the run folder's frontier) and the
    baselines; writes ``evaluate.csv``."""
    out = pathlib.Path(out)
    run = run or Run.build(config)
    method = method_of(config)
    folders = [pathlib.Path(c) for c in checkpoints]
    if not folders and (out / "frontier.csv").exists():
        folders = [pathlib.Path(r["checkpoint"]) for r in read_csv(out / "frontier.csv")]
    if not folders and (out / "unit" / "params.json").exists():
        folders = [out / "unit"]
    rows = []
    for folder in folders:
        params = json.loads((folder / "params.json").read_text())
        rows.append(_row(config, params, method.measure(run, method.load(run, params, folder)), folder))
    rows += baseline_rows(run, out) if baselines else []
    if run.dist.is_main:
        write_csv(out / "evaluate.csv", rows)
    return rows


# --- the commands ------------------------------------------------------------------------------------------------


def main(command: str, argv: Optional[Sequence[str]] = None) -> int:
    """``featcodec search|train|evaluate CONFIG [options]``."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"featcodec {command}", description={
        "search": "Optuna search over (C_r, S, lambda, Q) with its Pareto frontier of metric vs true bpp",
        "train": "train the config's one point and measure it",
        "evaluate": "measure saved units (default: the run's frontier) and the image-codec baselines"}[command])
    parser.add_argument("config", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="run folder (default: runs/CONFIG_NAME)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--progress", action="store_true", help="progress bars")
    if command == "search":
        parser.add_argument("--trials", type=int, default=None, help="trials to add (default: the config's)")
        parser.add_argument("--storage", default=None,
                            help="Optuna storage: an RDB URL, journal:PATH or memory (default: OUT/study.db)")
        parser.add_argument("--study", default=None, help="study name (default: the config's file name)")
        parser.add_argument("--sampler", choices=("random", "nsga2", "tpe"), default=None)
    if command in ("search", "evaluate"):
        parser.add_argument("--no-baselines", action="store_true", help="skip the image-codec sweep")
    if command == "evaluate":
        parser.add_argument("--checkpoint", type=pathlib.Path, action="append", default=[],
                            help="a trial folder to measure (repeatable)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    out = args.out or pathlib.Path("runs") / config.name
    run = Run.build(config, progress=args.progress)
    try:
        if command == "search":
            study = search(config, out, args.trials, args.storage, args.study, args.sampler,
                           baselines=not args.no_baselines, run=run)
            if study is not None:
                _print_frontier(read_csv(out / "frontier.csv"), out)
        elif command == "train":
            row = train(config, out, run=run)
            if row is not None:
                print(f"metric {row['metric']:.4f} at {row['true_bpp']:.4f} true bpp; wrote {out / 'unit'}")
        else:
            for row in evaluate_run(config, out, args.checkpoint, baselines=not args.no_baselines, run=run):
                print(f"{row.get('checkpoint') or row.get('codec')}: metric {float(row['metric']):.4f} "
                      f"at {float(row['true_bpp']):.4f} bpp")
    finally:
        shutdown(run.dist)
    return 0


def _print_frontier(rows: Sequence[Dict[str, str]], out: pathlib.Path) -> None:
    print(f"Pareto frontier ({len(rows)} points), written to {out}:")
    for r in rows:
        print(f"  trial {r['trial']:>4}: C_r={r['channels']} S={r['stride']} lambda={float(r['lam']):.3g} "
              f"Q={float(r['q_step']):.3g}  metric={float(r['metric']):.4f}  true bpp={float(r['true_bpp']):.4f}")


__all__ = ["BottleneckMethod", "CodedNetwork", "DataSource", "METHODS", "Measurement", "Method", "Run",
           "build_data", "build_network", "evaluate_run", "export_frontier", "main", "open_study",
           "register_method", "search", "train"]


from . import wacv_methods  # noqa: E402,F401  (registers the methods of Matsubara et al., WACV 2022)
