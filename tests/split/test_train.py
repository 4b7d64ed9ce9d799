"""Training: losses, defaults, checkpoints and resuming, evaluation metrics."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from featcodec.split import L1Rate, SplitModel, TrainConfig, Trainer, evaluate, make_unit, split, task_loss
from featcodec.split.train import mean_iou


def _tiny_network():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


def _data(n=24):
    generator = torch.Generator().manual_seed(5)
    return TensorDataset(torch.randn(n, 3, 12, 12, generator=generator), torch.randint(0, 4, (n,), generator=generator))


def _trainer(tmp_path, name, objective="supervised", rate=None):
    head, tail = split(_tiny_network(), "2")
    model = SplitModel(head, make_unit("dws", 8, 3, 2), rate or L1Rate("noise"), tail, q_step=0.5)
    config = TrainConfig.classification(objective=objective, lam=2.0, lr=0.05, step_size=1, gamma=0.5, epochs=2,
                                        seed=11, progress=False)
    return Trainer(model, config, checkpoint=tmp_path / name)


def _loader():
    return DataLoader(_data(), batch_size=8, shuffle=True, generator=torch.Generator())


@pytest.mark.parametrize("objective", ["supervised", "unsupervised"])
def test_resuming_equals_training_straight_through(tmp_path, objective):
    straight = _trainer(tmp_path, "straight.pt", objective)
    straight.fit(_loader())
    first = _trainer(tmp_path, "resumed.pt", objective)
    first.fit(_loader(), epochs=1)
    torch.manual_seed(12345)  # whatever happens between the runs must not matter
    resumed = _trainer(tmp_path, "resumed.pt", objective)
    assert resumed.epoch == 1
    resumed.fit(_loader())
    assert resumed.epoch == straight.epoch == 2
    for key, value in straight.model.unit.state_dict().items():
        assert torch.equal(value, resumed.model.unit.state_dict()[key]), key
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"] == 0.05 * 0.25
    state = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert set(state) >= {"unit", "rate", "optimizer", "scheduler", "epoch", "config"}
    assert state["epoch"] == 2


def test_a_different_seed_gives_a_different_run(tmp_path):
    one = _trainer(tmp_path, "a.pt")
    one.fit(_loader(), epochs=1)
    other = _trainer(tmp_path, "b.pt")
    other.config.seed = 12
    other.fit(_loader(), epochs=1)
    weights = [t.model.unit.encoder.layers[1].conv.weight for t in (one, other)]
    assert not torch.equal(*weights)


def test_training_lowers_the_loss(tmp_path):
    trainer = _trainer(tmp_path, "c.pt")
    trainer.config.epochs = 8
    history = trainer.fit(_loader())
    assert history[-1].loss < history[0].loss


def test_defaults_are_the_seeds():
    cls, seg = TrainConfig.classification(), TrainConfig.segmentation()
    assert (cls.optimizer, cls.lr, cls.step_size, cls.gamma) == ("sgd", 0.5, 15, 0.1)
    assert (seg.optimizer, seg.lr, seg.step_size) == ("adam", 1e-3, None)
    with pytest.raises(ValueError):
        TrainConfig(objective="semi")


def test_task_losses():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    supervised = TrainConfig(objective="supervised")
    assert task_loss(supervised, logits, target, None) == pytest.approx(
        float(nn.functional.cross_entropy(logits, target)))
    reference = logits + torch.tensor([[0.5, -0.5], [0.0, 0.0]])
    assert task_loss(TrainConfig(objective="unsupervised"), logits, None, reference) == pytest.approx(0.25 / 2)
    assert task_loss(TrainConfig(objective="unsupervised", distill_loss="mae"), logits, None,
                     reference) == pytest.approx(0.25)
    # Segmentation: per-pixel cross-entropy, label 255 ignored, DeepLab's dict output.
    seg_logits = torch.randn(1, 3, 2, 2)
    seg_target = torch.tensor([[[0, 255], [2, 255]]])
    expected = nn.functional.cross_entropy(seg_logits[0].permute(1, 2, 0)[[0, 1], [0, 0]], torch.tensor([0, 2]))
    assert task_loss(supervised, {"out": seg_logits}, seg_target, None) == pytest.approx(float(expected))


def test_evaluate_accuracy_and_miou():
    class Fixed(nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits

    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert evaluate(Fixed(logits), [(torch.zeros(3, 1), torch.tensor([1, 1, 0]))])["accuracy"] == pytest.approx(2 / 3)
    seg = torch.zeros(1, 2, 1, 3)
    seg[0, 1, 0, 2] = 1.0  # predicts [0, 0, 1]
    result = evaluate(Fixed({"out": seg}), [(torch.zeros(1, 3, 1, 3), torch.tensor([[[0, 1, 1]]]))], num_classes=2)
    assert result["pixel_accuracy"] == pytest.approx(2 / 3)
    assert result["miou"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert mean_iou(torch.tensor([[3, 0, 0], [0, 0, 0], [1, 0, 0]])) == pytest.approx(3 / 4 / 2)
