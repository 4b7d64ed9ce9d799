"""The training recipes of Matsubara et al., WACV 2022: the entropic student's two stages and the baselines.

Each ``train_*`` function takes the model(s), a training loader and a
:class:`~featcodec.split.stages.StageConfig` (a preset of
:mod:`featcodec.split.stages`, e.g. ``stages.student_stage1()``), trains in
place and returns the per-epoch history; ``checkpoint`` makes it resumable.

* Stage 1 (:func:`train_student_stage1`): encoder, decoder and prior learn
  to reproduce the teacher's first residual stage: loss = sum of squared
  errors to the teacher at the stem's end (and at ``distill_points``, if
  any, through the student's still frozen later stages) + beta * bits, both
  per image, plus the prior's quantile loss.  Nothing else changes: the
  rest of the student is frozen and in eval mode.
* Stage 2 (:func:`train_student_stage2`): the encoder and the prior are
  frozen (the latent is rounded), the decoder and every later layer train
  on ``alpha * CE + (1 - alpha) * tau^2 * KL`` (:func:`kd_loss`).
* CR+BQ (:func:`train_cr_bq`), end-to-end (:func:`train_end_to_end`) and
  the input codecs (:func:`train_input_codec`).
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..entropy import estimate_bits
from .neural_baselines import CRBQStudent, FactorizedPriorImageCodec, MeanScaleImageCodec
from .stages import StageConfig, StageEpoch, StageTrainer, outputs_until
from .student import EntropicStudent
from .train import logits_of, split_batch

PathLike = Union[str, "os.PathLike[str]"]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: Optional[torch.Tensor],
            alpha: float = 0.5, temperature: float = 1.0, ignore_index: int = 255) -> torch.Tensor:
    """``alpha * CE(student, target) + (1 - alpha) * tau^2 * KL(o_T || o_S)`` (Hinton et al.).

    o = softmax(logits / tau) over dimension 1.  The paper writes the term
    L_KL(o^S, o^T); as in Hinton et al. and torchdistill's KDLoss (the
    paper's code), the divergence is the teacher's softened distribution
    against the student's, sum o_T (log o_T - log o_S), averaged over the
    batch (and over pixels for segmentation logits (N, C, H, W)).
    """
    loss = student_logits.new_zeros(())
    if alpha > 0:
        if target is None:
            raise ValueError("kd_loss with alpha > 0 needs labels")
        loss = loss + alpha * F.cross_entropy(student_logits, target, ignore_index=ignore_index)
    if alpha < 1:
        log_student = F.log_softmax(student_logits / temperature, dim=1)
        log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
        divergence = (log_teacher.exp() * (log_teacher - log_student)).sum(1).mean()
        loss = loss + (1 - alpha) * temperature ** 2 * divergence
    return loss


def _squared_error(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return ((student - teacher.detach()) ** 2).sum()


def _set_modes(model: nn.Module, training: List[nn.Module]) -> None:
    model.eval()
    for module in training:
        module.train()


# --- the entropic student -----------------------------------------------------------------------------

def train_student_stage1(student: EntropicStudent, teacher: nn.Module, loader: Any, config: StageConfig, *,
                         checkpoint: Optional[PathLike] = None, device: Union[str, torch.device] = "cpu"
                         ) -> List[StageEpoch]:
    """Stage 1: the student bottleneck mimics the teacher's ``student.stem_end`` output, with the rate term.

    ``config.train_encoder=False`` (the segmentation preset) trains the
    decoder only, the encoder and prior kept as they are (rounding).
    """
    teacher = teacher.to(device).eval()
    student.to(device)
    bottleneck = student.bottleneck
    trainable = [bottleneck.decoder] + ([bottleneck.encoder, bottleneck.prior] if config.train_encoder else [])
    for parameter in student.parameters():
        parameter.requires_grad_(False)
    for module in trainable:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    points = (student.stem_end, *config.distill_points)

    def loss_fn(batch: Any) -> Tuple[torch.Tensor, dict]:
        images = split_batch(batch)[0].to(device)
        # Both networks run only as far as the deepest distillation point: the rest cannot change the loss.
        with torch.no_grad():
            wanted = outputs_until(teacher, points, images)
        got = outputs_until(student.network, points, images)
        if bottleneck.last is None:
            raise RuntimeError("the student's forward did not run its bottleneck")
        likelihoods, bottleneck.last = bottleneck.last[1], None
        n = images.shape[0]
        distortion = torch.stack([_squared_error(got[p], wanted[p]) for p in points]).sum() / n
        rate = estimate_bits(likelihoods) / n
        loss = distortion + config.beta * rate
        if config.train_encoder:
            loss = loss + bottleneck.prior.aux_loss()
        return loss, {"distortion": float(distortion.detach()), "bits_per_image": float(rate.detach())}

    trainer = StageTrainer(student, [p for m in trainable for p in m.parameters()], loss_fn, config,
                           checkpoint=checkpoint, modes=lambda m: _set_modes(m, trainable), name="student-stage1")
    return trainer.fit(loader)


def train_student_stage2(student: EntropicStudent, teacher: Optional[nn.Module], loader: Any, config: StageConfig, *,
                         checkpoint: Optional[PathLike] = None, device: Union[str, torch.device] = "cpu"
                         ) -> List[StageEpoch]:
    """Stage 2: encoder and prior frozen; decoder and every later layer fine-tuned on the task.

    Loss: :func:`kd_loss` with ``config.alpha`` and ``config.temperature``
    against ``teacher``'s logits (``alpha=1``: cross-entropy only, no
    teacher needed, as for segmentation).  DeepLab's auxiliary head, if the
    network has one, adds ``aux_weight`` times its cross-entropy and trains
    at ``aux_lr_factor`` times the learning rate.
    """
    if config.alpha < 1 and teacher is None:
        raise ValueError("stage 2 with alpha < 1 distills from a teacher: give one")
    if teacher is not None:
        teacher = teacher.to(device).eval()
    student.to(device)
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    student.freeze_encoder()
    tuned = [p for p in student.network.parameters() if p.requires_grad]
    aux = {id(p) for name, p in student.network.named_parameters() if name.startswith("aux_classifier.")}
    groups = [([p for p in tuned if id(p) not in aux], 1.0), ([p for p in tuned if id(p) in aux],
                                                               config.aux_lr_factor)]

    def loss_fn(batch: Any) -> Tuple[torch.Tensor, dict]:
        images, target = split_batch(batch)
        images = images.to(device)
        target = target.to(device) if target is not None else None
        out = student(images)
        teacher_logits = None
        if config.alpha < 1:
            with torch.no_grad():
                teacher_logits = logits_of(teacher(images))  # type: ignore[misc]
        logits = logits_of(out.output)
        loss = kd_loss(logits, teacher_logits if teacher_logits is not None else logits, target, config.alpha,
                       config.temperature, config.ignore_index)
        if isinstance(out.output, dict) and "aux" in out.output:
            if target is None:
                raise ValueError("the auxiliary head's loss needs labels")
            loss = loss + config.aux_weight * F.cross_entropy(out.output["aux"], target,
                                                              ignore_index=config.ignore_index)
        return loss, {"bits_per_image": float(out.rate.detach()) / images.shape[0]}

    trainer = StageTrainer(student, tuned, loss_fn, config, checkpoint=checkpoint, param_groups=groups,
                           name="student-stage2")
    return trainer.fit(loader)


def train_entropic_student(student: EntropicStudent, teacher: nn.Module, loader1: Any, loader2: Any,
                           stage1: StageConfig, stage2: StageConfig, *, checkpoint_dir: Optional[PathLike] = None,
                           device: Union[str, torch.device] = "cpu") -> Tuple[List[StageEpoch], List[StageEpoch]]:
    """Both stages in order (``loader1``/``loader2`` with the presets' batch sizes); checkpoints per stage."""
    import pathlib

    paths = [None, None] if checkpoint_dir is None else [pathlib.Path(checkpoint_dir) / f"stage{i}.pt"
                                                          for i in (1, 2)]
    first = train_student_stage1(student, teacher, loader1, stage1, checkpoint=paths[0], device=device)
    second = train_student_stage2(student, teacher, loader2, stage2, checkpoint=paths[1], device=device)
    return first, second


# --- the baselines ------------------------------------------------------------------------------------

def train_cr_bq(student: CRBQStudent, teacher: nn.Module, loader: Any, config: StageConfig, *,
                checkpoint: Optional[PathLike] = None, device: Union[str, torch.device] = "cpu"
                ) -> List[StageEpoch]:
    """Generalized head network distillation of a CR+BQ student, then 8-bit quantization turned on.

    Loss: sum of squared errors to the teacher's outputs at
    ``config.distill_points`` (the preset: the last three residual stages),
    per image.  Only the head (stem and bottleneck) trains.
    """
    if not config.distill_points:
        raise ValueError("CR+BQ distills at config.distill_points; the preset gives the last three stages")
    teacher = teacher.to(device).eval()
    student.to(device)
    student.bottleneck.quantize = False
    head = student.head_modules()

    def loss_fn(batch: Any) -> Tuple[torch.Tensor, dict]:
        images = split_batch(batch)[0].to(device)
        with torch.no_grad():
            wanted = outputs_until(teacher, config.distill_points, images)
        got = outputs_until(student.network, config.distill_points, images)
        loss = torch.stack([_squared_error(got[p], wanted[p]) for p in config.distill_points]).sum() / images.shape[0]
        return loss, {}

    trainer = StageTrainer(student, student.head_parameters(), loss_fn, config, checkpoint=checkpoint,
                           modes=lambda m: _set_modes(m, head), name="cr-bq")
    history = trainer.fit(loader)
    student.bottleneck.quantize = True
    return history


def train_end_to_end(student: EntropicStudent, loader: Any, config: StageConfig, *,
                     checkpoint: Optional[PathLike] = None, device: Union[str, torch.device] = "cpu"
                     ) -> List[StageEpoch]:
    """Singh et al., ICIP 2020: the whole student on CE + beta * bits per image (+ the prior's quantile loss)."""
    student.to(device)
    for parameter in student.parameters():
        parameter.requires_grad_(True)

    def loss_fn(batch: Any) -> Tuple[torch.Tensor, dict]:
        images, target = split_batch(batch)
        if target is None:
            raise ValueError("end-to-end training needs labels")
        images, target = images.to(device), target.to(device)
        out = student(images)
        task = F.cross_entropy(logits_of(out.output), target, ignore_index=config.ignore_index)
        rate = out.rate / images.shape[0]
        loss = task + config.beta * rate + student.prior.aux_loss()
        return loss, {"task": float(task.detach()), "bits_per_image": float(rate.detach())}

    trainer = StageTrainer(student, list(student.parameters()), loss_fn, config, checkpoint=checkpoint,
                           name="end-to-end")
    return trainer.fit(loader)


def train_input_codec(codec: Union[FactorizedPriorImageCodec, MeanScaleImageCodec], loader: Any,
                      config: StageConfig, *, checkpoint: Optional[PathLike] = None,
                      device: Union[str, torch.device] = "cpu") -> List[StageEpoch]:
    """Rate-distortion training of an image codec: bpp + beta * 255^2 * MSE (+ quantile loss).

    bpp counts every part the codec's likelihoods have (y and, for the
    mean-scale hyperprior, z).  Images are taken as the loader gives them;
    give it images in [0, 1] (normalize for the task network after decoding).
    """
    codec.to(device)

    def loss_fn(batch: Any) -> Tuple[torch.Tensor, dict]:
        images = split_batch(batch)[0].to(device)
        restored, likelihoods = codec(images)
        bpp = estimate_bits(likelihoods) / (images.shape[0] * images.shape[-2] * images.shape[-1])
        mse = F.mse_loss(restored, images)
        loss = bpp + config.beta * 255 ** 2 * mse + codec.prior.aux_loss()
        return loss, {"bpp": float(bpp.detach()), "mse": float(mse.detach())}

    trainer = StageTrainer(codec, list(codec.parameters()), loss_fn, config, checkpoint=checkpoint,
                           name="input-codec")
    return trainer.fit(loader)


__all__ = ["kd_loss", "train_cr_bq", "train_end_to_end", "train_entropic_student", "train_input_codec",
           "train_student_stage1", "train_student_stage2"]
