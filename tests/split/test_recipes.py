"""The two-stage training of the entropic student, the KD loss, the stage loop and the presets."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from featcodec.split import stages  # noqa: E402
from featcodec.split.recipes import kd_loss, train_student_stage1, train_student_stage2  # noqa: E402
from featcodec.split.stages import StageConfig, StageTrainer  # noqa: E402
from featcodec.split.student import entropic_student  # noqa: E402

from .tiny_networks import tiny_deeplab, tiny_resnet  # noqa: E402


def _loader(n=2, size=33, classes=10, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=batch)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix) and before[k].is_floating_point()]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_kd_loss_equals_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(3, 5, generator=g) * 2, torch.randn(3, 5, generator=g) * 2
    target = torch.tensor([0, 4, 2])
    alpha, tau = 0.3, 2.0
    ce = kd = 0.0
    for i in range(3):
        zs = [float(v) for v in student[i]]
        zt = [float(v) for v in teacher[i]]
        import math
        log_norm = math.log(sum(math.exp(z) for z in zs))
        ce += -(zs[int(target[i])] - log_norm) / 3
        ps = [math.exp(z / tau) for z in zs]
        pt = [math.exp(z / tau) for z in zt]
        ps, pt = [p / sum(ps) for p in ps], [p / sum(pt) for p in pt]
        kd += sum(t * math.log(t / s) for s, t in zip(ps, pt)) / 3  # KL(teacher || student)
    want = alpha * ce + (1 - alpha) * tau ** 2 * kd
    got = float(kd_loss(student, teacher, target, alpha, tau))
    assert got == pytest.approx(want, rel=1e-5)
    assert float(kd_loss(student, teacher, None, 0.0, tau)) == pytest.approx(tau ** 2 * kd, rel=1e-5)
    with pytest.raises(ValueError, match="labels"):
        kd_loss(student, teacher, None, 0.5)


def test_kd_loss_per_pixel_for_segmentation_logits():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    flat_s, flat_t = s.permute(0, 2, 3, 1).reshape(-1, 4), t.permute(0, 2, 3, 1).reshape(-1, 4)
    assert float(kd_loss(s, t, None, 0.0)) == pytest.approx(float(kd_loss(flat_s, flat_t, None, 0.0)), rel=1e-5)


def test_stage1_changes_only_encoder_decoder_and_prior():
    teacher = tiny_resnet(seed=3)
    student = entropic_student(teacher, latent_channels=4)
    before = _snapshot(student)
    teacher_before = _snapshot(teacher)
    config = stages.student_stage1(epochs=1, progress=False, milestones=())
    history = train_student_stage1(student, teacher, _loader(), config)
    after = _snapshot(student)
    assert len(history) == 1 and history[0].terms["distortion"] > 0
    mine = ("network.layer1.encoder.", "network.layer1.decoder.", "network.layer1.prior.")
    for prefix in mine:
        assert _changed(before, after, prefix), prefix
    others = [key for key in before if not key.startswith(mine)]
    assert any(k.startswith("network.layer4.") for k in others) and any(k.endswith("running_mean") for k in others)
    for key in others:  # weights and BatchNorm statistics alike
        assert torch.equal(before[key], after[key]), key
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())


def test_stage1_loss_is_the_squared_error_to_the_teacher_plus_beta_bits():
    """The logged loss of one batch equals a direct computation from that pass's restored features and
    likelihoods (caught by hooks, before the optimizer steps) and the teacher's own layer1 output."""
    from featcodec.split import split

    teacher = tiny_resnet(seed=9)
    student = entropic_student(teacher, latent_channels=4)
    fresh_prior = copy.deepcopy(student.prior)
    seen = {}
    student.bottleneck.register_forward_hook(lambda m, i, out: seen.__setitem__("restored", out.detach().clone()))
    student.prior.register_forward_hook(lambda m, i, out: seen.__setitem__("likelihoods", out[1].detach().clone()))
    loader = _loader(n=2, batch=2, seed=3)
    config = stages.student_stage1(epochs=1, progress=False, milestones=(), beta=0.7)
    history = train_student_stage1(student, teacher, loader, config)

    images = next(iter(loader))[0]
    with torch.no_grad():
        target = split(teacher, "layer1")[0](images)
    distortion = float(((seen["restored"] - target) ** 2).sum()) / 2
    bits = float(-torch.log2(seen["likelihoods"]).sum()) / 2
    assert history[0].terms["distortion"] == pytest.approx(distortion, rel=1e-5)
    assert history[0].terms["bits_per_image"] == pytest.approx(bits, rel=1e-5)
    aux = float(fresh_prior.aux_loss().detach())
    assert history[0].loss == pytest.approx(distortion + 0.7 * bits + aux, rel=1e-5)


def test_stage2_freezes_encoder_and_prior_and_tunes_the_rest():
    teacher = tiny_resnet(seed=4)
    student = entropic_student(teacher, latent_channels=4)
    student.prior.update_tables()
    before = _snapshot(student)
    config = stages.student_stage2(epochs=1, progress=False, lr=1e-2)
    train_student_stage2(student, teacher, _loader(), config)
    after = _snapshot(student)
    for prefix in ("network.layer1.encoder.", "network.layer1.prior."):
        keys = [k for k in before if k.startswith(prefix)]
        assert keys and all(torch.equal(before[k], after[k]) for k in keys), prefix
    for prefix in ("network.layer1.decoder.", "network.layer2.", "network.layer4.", "network.fc."):
        assert _changed(before, after, prefix), prefix
    assert not student.prior.training and not student.encoder.training
    student.prior.tables  # the stored tables are still the prior's: no StaleTablesError


def test_stage_trainer_resumes_to_the_same_parameters(tmp_path):
    def run(epochs_first, checkpoint):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        data = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.randn(8, 3), torch.randn(8, 2)), batch_size=2, shuffle=True,
            generator=torch.Generator())

        def loss_fn(batch):
            x, y = batch
            return ((model(x) - y) ** 2).mean(), {}

        config = StageConfig(epochs=3, optimizer="sgd", lr=0.1, milestones=(1,), progress=False)
        trainer = StageTrainer(model, model.parameters(), loss_fn, config, checkpoint=checkpoint)
        trainer.fit(data, epochs=epochs_first)
        if epochs_first < 3:
            model2 = model
            trainer = StageTrainer(model2, model2.parameters(), loss_fn, config, checkpoint=checkpoint)
            assert trainer.epoch == epochs_first
            trainer.fit(data)
        return model.state_dict()

    whole = run(3, tmp_path / "a.pt")
    resumed = run(1, tmp_path / "b.pt")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_poly_schedule_steps_every_batch():
    model = torch.nn.Linear(2, 1)
    config = StageConfig(epochs=2, optimizer="sgd", lr=1.0, schedule="poly", progress=False)
    loader = [(torch.zeros(1, 2),)] * 4
    trainer = StageTrainer(model, model.parameters(), lambda b: (model(b[0]).sum() * 0, {}), config)
    trainer.fit(loader)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    trainer = StageTrainer(model, model.parameters(), lambda b: (model(b[0]).sum() * 0, {}), config)
    trainer.fit(loader, epochs=1)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx((1 - 4 / 8) ** 0.9)


def test_presets_hold_the_papers_numbers():
    s1 = stages.student_stage1()
    assert (s1.optimizer, s1.lr, s1.epochs, s1.milestones, s1.batch_size) == ("adam", 1e-3, 10, (5, 8), 64)
    s2 = stages.student_stage2()
    assert (s2.optimizer, s2.lr, s2.momentum, s2.weight_decay, s2.milestones, s2.batch_size, s2.alpha,
            s2.temperature) == ("sgd", 1e-3, 0.9, 5e-4, (5,), 128, 0.5, 1.0)
    seg2 = stages.student_stage2("segmentation")
    assert (seg2.lr, seg2.lr * seg2.aux_lr_factor, seg2.schedule) == (2.5e-3, 2.5e-2, "poly")
    assert not stages.student_stage1("segmentation").train_encoder
    bq = stages.cr_bq()
    assert bq.distill_points == ("layer2", "layer3", "layer4") and bq.milestones == (5, 10, 15)
    e2e = stages.end_to_end()
    assert (e2e.schedule, e2e.epochs, e2e.batch_size, e2e.weight_decay) == ("cosine", 60, 256, 1e-4)
    with pytest.raises(ValueError, match="task"):
        stages.student_stage1("detection")
    with pytest.raises(ValueError, match="optimizer"):
        StageConfig(optimizer="rmsprop")


def test_stage2_segmentation_trains_the_auxiliary_head_faster():
    deeplab = tiny_deeplab(num_classes=5, seed=7)
    student = entropic_student(deeplab, latent_channels=4)
    before = _snapshot(student)
    g = torch.Generator().manual_seed(8)
    data = torch.utils.data.TensorDataset(torch.randn(2, 3, 33, 33, generator=g),  # ASPP's pooled BN needs 2
                                          torch.randint(0, 5, (2, 33, 33), generator=g))
    config = stages.student_stage2("segmentation", epochs=1, progress=False)
    seen = {}
    original = StageTrainer.fit

    def spy(self, loader, epochs=None):
        seen["lrs"] = sorted(group["initial_lr"] if "initial_lr" in group else group["lr"]
                             for group in self.optimizer.param_groups)
        return original(self, loader, epochs)

    StageTrainer.fit = spy
    try:
        train_student_stage2(student, None, torch.utils.data.DataLoader(data, batch_size=2), config)
    finally:
        StageTrainer.fit = original
    assert seen["lrs"] == pytest.approx([2.5e-3, 2.5e-2])
    after = _snapshot(student)
    for prefix in ("network.backbone.layer1.encoder.", "network.backbone.layer1.prior."):
        assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix
    for prefix in ("network.aux_classifier.", "network.classifier.", "network.backbone.layer1.decoder.",
                   "network.backbone.layer3."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix
