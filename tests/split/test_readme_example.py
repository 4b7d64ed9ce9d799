"""The README's split example runs verbatim, on a random-weight ResNet-50 and a tiny loader."""

from __future__ import annotations

import pathlib
import re

import torch
import torchvision

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _split_example() -> str:
    text = README.read_text()
    section = text[text.index("## Split DNNs"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's Split DNNs section has no python block"
    return match.group(1)


def test_the_readme_split_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it writes unit.pt and the bank file
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    loader = [(torch.randn(2, 3, 32, 32, generator=generator), torch.tensor([3, 7]))]  # small: 30 epochs
    namespace = {"resnet50": torchvision.models.resnet50(weights=None).eval(), "loader": loader}
    exec(compile(_split_example(), str(README), "exec"), namespace)
    assert (tmp_path / "unit.pt").exists() and (tmp_path / "resnet50-layer4.2.fcbank").exists()
    assert namespace["unit_id"] == 0 and namespace["logits"].shape == (1, 1000)
    with torch.no_grad():
        expected = namespace["tail"](namespace["codec"].decode(namespace["data"]))
    assert torch.equal(namespace["logits"], expected)
