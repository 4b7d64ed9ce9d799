"""Runner methods for Matsubara et al., WACV 2022: ``entropic_student``, ``cr_bq``, ``end_to_end``, ``input_codec``.

Chosen in a run config by ``[train] method = "..."``; options in ``[method]``
(every key optional)::

    [method]
    task = "classification"      # or "segmentation": picks the presets of featcodec.split.stages
    latent_channels = 24         # entropic_student, end_to_end: N
    log10_lam = [-1.0, 1.0]      # the search range of the rate weight (beta, or lambda for input_codec)
    channels = [1, 2, 3, 6, 9, 12]   # cr_bq: the bottleneck widths searched
    codec = "factorized"         # input_codec: "factorized" (Balle et al. 2018) or "mean_scale" (Minnen et al. 2018)
    codec_channels = 128         # input_codec: its convolutions' width
    stage1 = { epochs = 10 }     # overrides of a preset's StageConfig fields (any of them)
    stage2 = { epochs = 10 }     # (cr_bq, end_to_end and input_codec read `stage`)
    stage = { epochs = 20 }

``[train] lam`` is the rate weight ``featcodec train`` uses (beta of the
entropic student's stage 1 and of end-to-end training, lambda of the input
codec); ``[train] channels`` the CR+BQ width.  In trials.csv the weight is in
the ``lam`` column and the width in ``channels``.

The networks are the config's: the teacher is ``run.network``; the cut
(``[network] split``) should be the first residual stage (``layer1``, or
``backbone.layer1`` for DeepLabv3), where these models put their bottleneck.
Every method measures through real messages, one per validation image.
These methods train in one process (no DistributedDataParallel yet).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Dict, Tuple

import torch
from torch import nn

from . import stages
from .neural_baselines import IMAGE_CODECS, cr_bq_student, end_to_end_student
from .recipes import train_cr_bq, train_end_to_end, train_input_codec, train_student_stage1, train_student_stage2
from .runner import Measurement, Method, Run, register_method
from .student import entropic_student
from .train import evaluate, logits_of
from .units import parameter_count


class CodedImages(nn.Module):
    """``client`` then ``server`` for each image of a batch, one message each; counts the bits and pixels."""

    def __init__(self, client: Callable[[torch.Tensor], bytes], server: Callable[[bytes], Any]) -> None:
        super().__init__()
        self.client, self.server = client, server
        self.bits = self.pixels = 0

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for i in range(x.shape[0]):
            data = self.client(x[i:i + 1])
            self.bits += 8 * len(data)
            outputs.append(logits_of(self.server(data)))
        self.pixels += x.shape[0] * x.shape[-2] * x.shape[-1]
        return torch.cat(outputs)


class _WACVMethod(Method):
    """What the four methods share: options, single-process check, safetensors state, measuring."""

    knob = "lam"  # the searched hyper-parameter: "lam" (a log-uniform weight) or "channels"

    def options(self, run: Run) -> Dict[str, Any]:
        return dict(run.config.method)

    def task(self, run: Run) -> str:
        task = self.options(run).get("task", run.data.task)
        if task not in ("classification", "segmentation"):
            raise ValueError(f"[method] task must be 'classification' or 'segmentation', got {task!r}")
        return task

    def stage(self, run: Run, preset: stages.StageConfig, key: str) -> stages.StageConfig:
        changes = dict(self.options(run).get(key, {}))
        for name in ("milestones", "distill_points"):
            if name in changes:
                changes[name] = tuple(changes[name])
        return preset.replace(seed=run.config.train.seed, progress=run.progress, **changes)

    def suggest(self, trial: Any, run: Run) -> Dict[str, Any]:
        params = self.fixed(run)
        if self.knob == "lam":
            low, high = self.options(run).get("log10_lam", [-1.0, 1.0])
            params["lam"] = 10 ** trial.suggest_float("log10_lam", float(low), float(high))
        else:
            params["channels"] = int(trial.suggest_categorical("channels", list(
                self.options(run).get("channels", [1, 2, 3, 6, 9, 12]))))
        return params

    def fixed(self, run: Run) -> Dict[str, Any]:
        o = self.options(run)
        return {"lam": float(run.config.train.lam), "channels": int(o.get("latent_channels", 24))}

    def _single_process(self, run: Run) -> None:
        if run.dist.world_size > 1:
            raise ValueError(f"{type(self).__name__} trains in one process; run it without torchrun")

    def _measure(self, run: Run, client: Callable[[torch.Tensor], bytes], server: Callable[[bytes], Any],
                 parameters: int) -> Measurement:
        coded = CodedImages(client, server)
        result = evaluate(coded, run.val_loader(), num_classes=run.data.num_classes, device=run.device)
        return Measurement(result[run.data.metric], coded.bits / max(coded.pixels, 1), None,
                           {"parameters": float(parameters)})

    def save(self, trained: Tuple[Any, Dict[str, Any]], folder: pathlib.Path) -> None:
        from safetensors.torch import save_file

        model, params = trained
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(folder / "model.safetensors"))
        (folder / "params.json").write_text(json.dumps(params, indent=1, sort_keys=True))

    def load(self, run: Run, params: Dict[str, Any], folder: pathlib.Path) -> Tuple[Any, Dict[str, Any]]:
        from safetensors.torch import load_file

        model = self.build(run, params)
        model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(run.device)))
        return model.eval(), params

    def build(self, run: Run, params: Dict[str, Any]) -> Any:
        raise NotImplementedError


class EntropicStudentMethod(_WACVMethod):
    """The entropic student: stage 1 (``[method] stage1``) then stage 2 (``stage2``); the rate weight is beta."""

    def build(self, run: Run, params: Dict[str, Any]) -> Any:
        torch.manual_seed(run.config.train.seed)
        return entropic_student(run.network, latent_channels=int(params["channels"])).to(run.device)

    def fit(self, run: Run, params: Dict[str, Any], folder: pathlib.Path) -> Tuple[Any, Dict[str, Any]]:
        self._single_process(run)
        student = self.build(run, params)
        task = self.task(run)
        first = self.stage(run, stages.student_stage1(task, beta=float(params["lam"])), "stage1")
        second = self.stage(run, stages.student_stage2(task), "stage2")
        train_student_stage1(student, run.network, run.train_loader(first.batch_size), first,
                             checkpoint=folder / "stage1.pt", device=run.device)
        train_student_stage2(student, run.network, run.train_loader(second.batch_size), second,
                             checkpoint=folder / "stage2.pt", device=run.device)
        return student.eval(), params

    def measure(self, run: Run, trained: Tuple[Any, Dict[str, Any]]) -> Measurement:
        student = trained[0]
        codec = student.codec()
        return self._measure(run, lambda x: student.client(x, codec), lambda d: student.server(d, codec),
                             parameter_count(student.bottleneck.encoder))

    def codec(self, trained: Tuple[Any, Dict[str, Any]]) -> Any:
        return trained[0].codec()


class EndToEndMethod(EntropicStudentMethod):
    """Singh et al., ICIP 2020: the student's architecture trained from scratch on CE + beta * bits (``stage``)."""

    def build(self, run: Run, params: Dict[str, Any]) -> Any:
        return end_to_end_student(run.network, latent_channels=int(params["channels"]),
                                  seed=run.config.train.seed).to(run.device)

    def fit(self, run: Run, params: Dict[str, Any], folder: pathlib.Path) -> Tuple[Any, Dict[str, Any]]:
        self._single_process(run)
        student = self.build(run, params)
        config = self.stage(run, stages.end_to_end(self.task(run), beta=float(params["lam"])), "stage")
        train_end_to_end(student, run.train_loader(config.batch_size), config, checkpoint=folder / "train.pt",
                         device=run.device)
        return student.eval(), params


class CRBQMethod(_WACVMethod):
    """Channel reduction + 8-bit bottleneck quantization; the searched knob is the bottleneck's width."""

    knob = "channels"

    def fixed(self, run: Run) -> Dict[str, Any]:
        return {"channels": int(run.config.train.channels)}

    def build(self, run: Run, params: Dict[str, Any]) -> Any:
        torch.manual_seed(run.config.train.seed)
        return cr_bq_student(run.network, int(params["channels"])).to(run.device)

    def fit(self, run: Run, params: Dict[str, Any], folder: pathlib.Path) -> Tuple[Any, Dict[str, Any]]:
        self._single_process(run)
        student = self.build(run, params)
        config = self.stage(run, stages.cr_bq(self.task(run)), "stage")
        train_cr_bq(student, run.network, run.train_loader(config.batch_size), config,
                    checkpoint=folder / "train.pt", device=run.device)
        return student.eval(), params

    def load(self, run: Run, params: Dict[str, Any], folder: pathlib.Path) -> Tuple[Any, Dict[str, Any]]:
        student, params = super().load(run, params, folder)
        student.bottleneck.quantize = True
        return student, params

    def measure(self, run: Run, trained: Tuple[Any, Dict[str, Any]]) -> Measurement:
        codec = trained[0].codec()
        return self._measure(run, codec.encode, codec.decode,
                             parameter_count(trained[0].bottleneck.encoder))

    def codec(self, trained: Tuple[Any, Dict[str, Any]]) -> Any:
        return trained[0].codec()


class InputCodecMethod(_WACVMethod):
    """A neural image codec before the unchanged network; knob: lambda.

    ``[method] codec``: ``"factorized"`` (Balle et al., ICLR 2018, the
    default) or ``"mean_scale"`` (the mean-scale hyperprior of Minnen et al.,
    NeurIPS 2018).  The codec is trained on the training images as the
    loader gives them (normalized); it reconstructs them, and the network
    runs on the result.
    """

    def fixed(self, run: Run) -> Dict[str, Any]:
        o = self.options(run)
        return {"lam": float(run.config.train.lam), "channels": int(o.get("codec_channels", 128))}

    def build(self, run: Run, params: Dict[str, Any]) -> Any:
        kind = self.options(run).get("codec", "factorized")
        if kind not in IMAGE_CODECS:
            raise ValueError(f"[method] codec must be one of {sorted(IMAGE_CODECS)}, got {kind!r}")
        torch.manual_seed(run.config.train.seed)
        return IMAGE_CODECS[kind](int(params["channels"])).to(run.device)

    def fit(self, run: Run, params: Dict[str, Any], folder: pathlib.Path) -> Tuple[Any, Dict[str, Any]]:
        self._single_process(run)
        model = self.build(run, params)
        config = self.stage(run, stages.input_codec(lam=float(params["lam"])), "stage")
        train_input_codec(model, run.train_loader(config.batch_size), config, checkpoint=folder / "train.pt",
                          device=run.device)
        return model.eval(), params

    def measure(self, run: Run, trained: Tuple[Any, Dict[str, Any]]) -> Measurement:
        codec = trained[0].codec()
        network = run.network.eval()
        return self._measure(run, codec.encode, lambda d: network(codec.decode(d)),
                             parameter_count(trained[0].g_a))

    def codec(self, trained: Tuple[Any, Dict[str, Any]]) -> Any:
        return trained[0].codec()


for _name, _method in (("entropic_student", EntropicStudentMethod), ("end_to_end", EndToEndMethod),
                       ("cr_bq", CRBQMethod), ("input_codec", InputCodecMethod)):
    register_method(_name, _method)

__all__ = ["CRBQMethod", "CodedImages", "EndToEndMethod", "EntropicStudentMethod", "InputCodecMethod"]
