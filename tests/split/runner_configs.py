"""Small configs for the runner's tests: digits, a few hundred images, one short epoch."""

from __future__ import annotations

import pathlib

DIGITS = """
[network]
name = "digits"
split = "features.block2"
kwargs = {{ epochs = 2 }}

[data]
kind = "digits"
limit_train = {limit_train}
limit_val = 48

[train]
objective = "supervised"
loss = "cross_entropy"
rate = "{rate}"
channels = 8
stride = 2
lam = 1.0
q_step = 1.0
optimizer = "adam"
lr = 3e-3
step_size = 0
epochs = 1
batch_size = {batch_size}
prior_epochs = 1
device = "cpu"

[search]
preset = "digits"
trials = 2

[baselines]
codecs = {codecs}
qualities = [10, 60]
"""


def digits_config(folder: pathlib.Path, name: str = "digits_small", rate: str = "neural", limit_train: int = 192,
                  batch_size: int = 32, codecs: str = '["jpeg"]') -> pathlib.Path:
    path = folder / f"{name}.toml"
    path.write_text(DIGITS.format(rate=rate, limit_train=limit_train, batch_size=batch_size, codecs=codecs))
    return path
