"""featcodec.split: bottleneck units in split DNNs, trained with the network frozen.

Needs PyTorch and torchvision (``pip install featcodec[split]``)::

    from featcodec import split as fs
    head, tail = fs.split(resnet, "layer4.2")                 # cut.py: where the network is cut
    unit = fs.make_unit("dws", in_channels=2048, out_channels=64, stride=2)
    model = fs.SplitModel(head, unit, fs.L1Rate(), tail, q_step=2.0)
    fs.Trainer(model, fs.TrainConfig.classification(lam=1.0), checkpoint="unit.pt").fit(loader)

The entropic student of Matsubara et al., WACV 2022 (the stem replaced by a
GDN encoder and decoder, the tail fine-tuned) and its baselines::

    student = fs.entropic_student(resnet)                       # student.py
    fs.train_student_stage1(student, resnet, loader64, fs.stages.student_stage1())
    fs.train_student_stage2(student, resnet, loader128, fs.stages.student_stage2())
    data = student.client(images); logits = student.server(data)

``fs.tail_mode_of(model)`` says whether a model's tail is frozen (the units
above) or tuned (the entropic student).

Layers: this package uses :mod:`featcodec.entropy` (quantizer, entropy
models) and the codec; nothing below it imports it.
"""

from .cut import CrossingValue, crossing_summary, feature_of, split, with_feature
from .model import SplitModel, SplitOutput, freeze
from .rate import L1Rate, NeuralRate, RATE_TERMS, RateTerm, factorized_rate, hyperprior_rate, make_rate
from .search import (CLASSIFICATION, PRESETS, SEGMENTATION, SearchPoint, SearchResult, SearchSpace, frontier_of,
                     pareto_frontier)
from .train import EpochStats, TrainConfig, Trainer, evaluate, logits_of, task_loss
from . import recipes, stages
from .neural_baselines import (CRBQStudent, FactorizedPriorImageCodec, MeanScaleImageCodec, QuantizedBottleneck,
                               Uint8Codec, cr_bq_student, end_to_end_student)
from .gdn import GDN
from .latency import LORA_KBPS, LatencyReport, latency_report, transfer_seconds
from .recipes import (kd_loss, train_cr_bq, train_end_to_end, train_entropic_student, train_input_codec,
                      train_student_stage1, train_student_stage2)
from .stages import StageConfig, StageTrainer
from .student import EntropicStudent, StudentOutput, TailMode, entropic_student, tail_mode_of
from .units import (DEFAULT_KIND, UNIT_KINDS, BottleneckUnit, IdentityUnit, Stage, make_unit, parameter_count,
                    register_unit)

__all__ = [
    "CRBQStudent", "EntropicStudent", "FactorizedPriorImageCodec", "GDN", "LORA_KBPS", "LatencyReport",
    "MeanScaleImageCodec", "QuantizedBottleneck", "StageConfig", "StageTrainer", "StudentOutput", "TailMode", "Uint8Codec", "cr_bq_student",
    "end_to_end_student", "entropic_student", "kd_loss", "latency_report", "recipes", "stages", "tail_mode_of",
    "train_cr_bq", "train_end_to_end", "train_entropic_student", "train_input_codec", "train_student_stage1",
    "train_student_stage2", "transfer_seconds",
    "BottleneckUnit", "CLASSIFICATION", "CrossingValue", "DEFAULT_KIND", "EpochStats", "IdentityUnit", "L1Rate",
    "NeuralRate", "RATE_TERMS", "RateTerm", "SEGMENTATION", "SearchPoint", "SearchResult", "SearchSpace",
    "SplitModel", "SplitOutput", "Stage", "TrainConfig", "Trainer", "UNIT_KINDS", "crossing_summary", "evaluate",
    "factorized_rate", "feature_of", "freeze", "frontier_of", "hyperprior_rate", "logits_of", "make_rate",
    "make_unit", "pareto_frontier", "parameter_count", "PRESETS", "register_unit", "split", "task_loss",
    "with_feature",
]
