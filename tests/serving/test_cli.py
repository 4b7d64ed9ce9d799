"""``featcodec serve`` from local files: a bank file and a ResNet-50 state dict, on 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from featcodec.bank import RateBank
from featcodec.cli import main
from featcodec.serving import Client, Tail
from featcodec.split import data, split

from conftest import make_bank

TIMEOUT = 120


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A random ResNet-50 saved as a state dict and a bank for its layer4.2 at 32x32 inputs, both saved."""
    folder = tmp_path_factory.mktemp("deployment")
    torch.manual_seed(0)
    network = data.resnet50(num_classes=10)
    torch.save(network.state_dict(), folder / "resnet50.pt")
    head, tail = split(network, "layer4.2")
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    bank = make_bank(head, images, unit_channels=(4,), split_name="layer4.2")
    bank.save(folder / "bank.fcbank")
    return folder, head, Tail(tail, bank.feature_shape), RateBank.load(folder / "bank.fcbank"), images


def test_serve_answers_like_the_network_run_locally(deployment):
    folder, head, tail, bank, images = deployment
    command = [sys.executable, "-m", "featcodec.cli", "serve", str(folder / "bank.fcbank"), "--model", "resnet50",
               "--num-classes", "10", "--weights", str(folder / "resnet50.pt"), "--split", "layer4.2",
               "--host", "127.0.0.1", "--port", "0", "--top-k", "2", "--stop-after", str(TIMEOUT)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # the server prints its address once it listens
        match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        assert match, line + server.stderr.read() if server.poll() is not None else line
        with Client(match.group(1), bank, head, unit=0, timeout=60) as client:
            info = client.check_server()
            assert (info.network, info.split, info.top_k) == ("resnet50", "layer4.2", 2)
            messages = client.encode(images)
            answers = client.send(messages)
        for answer, message in zip(answers, messages):
            expected = tail(bank.decode(message)[0])
            assert answer.ok and torch.equal(torch.from_numpy(answer.classes)[:, :2],
                                             torch.from_numpy(expected.classes)[:, :2])
    finally:
        server.terminate()
        server.wait(30)


def test_serve_refuses_a_bank_for_another_split(deployment):
    folder = deployment[0]
    with pytest.raises(SystemExit, match="layer4.2"):
        main(["serve", str(folder / "bank.fcbank"), "--model", "resnet50", "--random-weights", "--split", "layer4.1"])


def test_serve_needs_weights_or_says_random(deployment, capsys):
    with pytest.raises(SystemExit):
        main(["serve", str(deployment[0] / "bank.fcbank"), "--model", "resnet50", "--split", "layer4.2"])
    assert "--weights" in capsys.readouterr().err
