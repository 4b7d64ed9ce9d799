"""The server on 127.0.0.1 (ephemeral port): correct answers, per-message errors, bounded costs, disconnects."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import grpc
import numpy as np
import pytest
import torch

from featcodec.serving import (BackgroundServer, Client, ErrorCode, Limits, SplitServer, StreamClosed, Tail,
                               use_torch_threads)
from featcodec.serving import inference_pb2 as pb
from featcodec.serving._protocol import INFER
from featcodec.serving.server import bank_fingerprint
from featcodec.split import split

from conftest import TinySegmenter, make_bank

TIMEOUT = 30.0


class DecodeOnly:
    """The bank without decode_many: the server decodes a message a thread on its pool."""

    def __init__(self, bank) -> None:
        self.bank, self.feature_shape, self.units = bank, bank.feature_shape, bank.units

    def decode(self, data):
        return self.bank.decode(data)


def local_answers(bank, tail: Tail, messages):
    """What running head -> codec -> tail in this process gives, one message at a time."""
    return [tail(bank.decode(m)[0]) for m in messages]


def assert_same_classification(answer, expected):
    assert answer.ok, answer.error
    assert torch.equal(torch.from_numpy(answer.classes), torch.from_numpy(expected.classes))
    np.testing.assert_allclose(answer.probabilities, expected.probabilities, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def tail(classifier, bank):
    return Tail(classifier[2], bank.feature_shape, top_k=3)


@pytest.fixture(scope="module")
def running(bank, tail):
    server = SplitServer(bank, tail, Limits(max_batch=8, max_message_bytes=4096, max_in_flight=16),
                         network="tiny", split="body")
    with BackgroundServer(server, "127.0.0.1:0", timeout=TIMEOUT) as background:
        yield background


@pytest.fixture()
def client(running, bank, classifier):
    with Client(running.address, bank, classifier[1], unit=1, timeout=TIMEOUT) as c:
        yield c


def test_answers_equal_running_the_network_locally(client, bank, tail, images):
    messages = client.encode(images)
    answers = client.send(messages)
    for answer, expected in zip(answers, local_answers(bank, tail, messages)):
        assert answer.unit == 1
        assert answer.classes.shape == (1, 3)
        assert_same_classification(answer, expected)
    # And the same through infer(), with the unit picked by rate.
    client.unit, client.target_bpp = None, 0.015
    for answer, expected in zip(client.infer(images[:2]), local_answers(bank, tail, client.encode(images[:2]))):
        assert answer.unit == 0
        assert_same_classification(answer, expected)


def test_a_message_of_several_images(client, bank, tail, classifier, images):
    with torch.no_grad():
        message = bank.encode(classifier[1](images[:3]), unit=0)
    (answer,) = client.send([message])
    assert answer.classes.shape == (3, 3)
    assert_same_classification(answer, tail(bank.decode(message)[0]))


def test_describe(client, bank):
    info = client.describe()
    assert (info.network, info.split, info.task, info.top_k) == ("tiny", "body", "classification", 3)
    assert tuple(info.feature_shape) == bank.feature_shape
    assert (info.units, info.max_batch, info.max_in_flight, info.max_message_bytes) == (2, 8, 16, 4096)
    assert info.bank_fingerprint == bank_fingerprint(bank) and len(info.bank_fingerprint) == 32
    assert client.check_server() == info


def test_a_client_with_another_bank_is_told(running, classifier, images):
    other = make_bank(classifier[1], images, unit_channels=(3,))
    with Client(running.address, other, classifier[1], unit=0, timeout=TIMEOUT) as client:
        with pytest.raises(ValueError, match="another bank"):
            client.check_server()
        (answer,) = client.send(client.encode(images[:1]))  # and the server refuses its messages
        assert answer.error is not None and answer.error.code == ErrorCode.MALFORMED


def test_bad_messages_get_an_error_each_and_the_stream_goes_on(client, bank, tail, images):
    good = client.encode(images[:2])
    rng = np.random.default_rng(0)
    bad = {
        "empty": b"",
        "garbage": rng.integers(0, 256, 40, dtype=np.uint8).tobytes(),
        "unknown unit": bytes([31 << 3]) + good[0][1:],  # the header byte's unit id field (bits 7-3)
        "other unit": bytes([good[1][0] ^ 1 << 3]) + good[1][1:],  # unit 0's payload under unit 1's name
        "truncated": good[0][: len(good[0]) // 2],
        "one byte": good[0][:1],
        "too large": good[0] + bytes(5000),
    }
    messages = [good[0], *bad.values(), good[1]]
    answers = client.send(messages)
    expected = local_answers(bank, tail, good)
    assert_same_classification(answers[0], expected[0])
    assert_same_classification(answers[-1], expected[1])
    for name, answer in zip(bad, answers[1:-1]):
        assert not answer.ok, name
        want = ErrorCode.TOO_LARGE if name == "too large" else ErrorCode.MALFORMED
        assert answer.error.code == want, (name, answer.error)
        assert answer.classes is None and answer.error.detail


def test_a_frame_far_over_the_limit_ends_its_stream_only(client, bank, tail, images):
    good = client.encode(images[:1])
    with client.stream() as stream:
        huge = stream.submit(good[0] + bytes(2 * 4096 + 100))
        with pytest.raises(StreamClosed, match="RESOURCE_EXHAUSTED"):
            huge.result(TIMEOUT)
    assert_same_classification(client.send(good)[0], local_answers(bank, tail, good)[0])


def test_too_many_images_in_one_message(client, bank, classifier):
    with torch.no_grad():
        features = classifier[1](torch.randn(9, 3, 32, 32))
    (answer,) = client.send([bank.encode(features, unit=0)])
    assert answer.error is not None and answer.error.code == ErrorCode.TOO_LARGE
    assert "max_elements" in answer.error.detail  # refused from its header, before decoding


def test_frames_that_are_not_requests(running, client, images):
    """A frame that does not parse as an InferRequest gets an error reply with id 0; the stream goes on."""
    good = pb.InferRequest(id=7, message=client.encode(images[:1])[0]).SerializeToString()
    with grpc.insecure_channel(running.address) as channel:
        infer = channel.stream_stream(INFER, request_serializer=None, response_deserializer=pb.InferReply.FromString)
        replies = list(infer(iter([b"\xff\xff\xff", good, b"\x0a\x05ab"]), timeout=TIMEOUT))
    assert len(replies) == 3
    errors = [r for r in replies if r.WhichOneof("result") == "error"]
    answers = [r for r in replies if r.WhichOneof("result") == "classification"]
    assert [r.id for r in errors] == [0, 0] and all(r.error.code == ErrorCode.MALFORMED for r in errors)
    assert [r.id for r in answers] == [7]


def test_a_cancelled_stream_leaves_the_server_serving(client, running, bank, tail, images):
    messages = client.encode(images)
    stream = client.stream()
    futures = [stream.submit(m) for m in messages]
    stream.cancel()
    for future in futures:  # each one either answered before the cancel or failed with StreamClosed
        try:
            future.result(TIMEOUT)
        except StreamClosed:
            pass
    with pytest.raises(StreamClosed):
        for _ in range(100):  # the reader may need a moment to see the end
            stream.submit(messages[0]).result(TIMEOUT)
            time.sleep(0.01)
    stream.close()
    for answer, expected in zip(client.send(messages), local_answers(bank, tail, messages)):
        assert_same_classification(answer, expected)


def test_a_client_killed_mid_stream_leaves_the_server_serving(client, running, bank, tail, images):
    """A client process that dies with messages in flight (no clean end of stream) does not hurt the server."""
    messages = client.encode(images)
    request = pb.InferRequest(id=1, message=messages[0]).SerializeToString()
    script = textwrap.dedent(f"""
        import os, grpc
        channel = grpc.insecure_channel({running.address!r})
        infer = channel.stream_stream({INFER!r}, request_serializer=None, response_deserializer=None)
        for i, reply in enumerate(infer(iter([{request!r}] * 10000), timeout=60)):
            if i == 20:
                print("killing", flush=True)
                os._exit(0)
    """)
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT)
    assert "killing" in process.stdout, process.stderr
    for answer, expected in zip(client.send(messages), local_answers(bank, tail, messages)):
        assert_same_classification(answer, expected)


def test_a_stream_half_closed_with_messages_in_flight_gets_all_its_replies(client, bank, tail, images):
    messages = client.encode(images) * 3
    with client.stream() as stream:  # close() ends the request side at once, then waits for the replies
        futures = [stream.submit(m) for m in messages]
    expected = local_answers(bank, tail, messages)
    for future, want in zip(futures, expected):
        assert future.done()
        assert_same_classification(future.result(0), want)


class SlowBank:
    """A bank whose decoding takes a while and counts how many run at once."""

    def __init__(self, bank, delay):
        self.bank, self.delay = bank, delay
        self.feature_shape, self.units = bank.feature_shape, bank.units
        self.lock, self.now, self.most = threading.Lock(), 0, 0

    def decode(self, data):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.delay)
            return self.bank.decode(data)
        finally:
            with self.lock:
                self.now -= 1


def test_a_stream_has_at_most_max_in_flight_messages_being_answered(bank, tail, classifier, images):
    slow = SlowBank(bank, 0.02)
    # A long max_wait puts a stream's two messages in one batch, which the pool decodes at once.
    server = SplitServer(slow, tail, Limits(max_in_flight=2, decode_workers=6, max_wait=0.25))
    with BackgroundServer(server, timeout=TIMEOUT) as running:
        with Client(running.address, bank, classifier[1], unit=0, window=12, timeout=TIMEOUT) as client:
            messages = client.encode(images) * 2
            answers = client.send(messages)
    assert all(a.ok for a in answers)
    assert slow.most == 2


def test_messages_that_arrive_together_are_batched_up_to_max_batch(bank, tail, classifier, images):
    server = SplitServer(bank, tail, Limits(max_batch=4, max_wait=0.25))
    with BackgroundServer(server, timeout=TIMEOUT) as running:
        with Client(running.address, bank, classifier[1], unit=0, window=12, timeout=TIMEOUT) as client:
            messages = client.encode(images) * 2
            answers = client.send(messages)
            for answer, expected in zip(answers, local_answers(bank, tail, messages)):
                assert_same_classification(answer, expected)
    assert server.batched_images == 12
    assert server.largest_batch == 4
    assert server.batches < 12


@pytest.mark.parametrize("wrap", [lambda bank: bank, DecodeOnly], ids=["decode_many", "pool"])
def test_a_batch_of_good_and_bad_messages_gets_an_answer_each(bank, tail, classifier, images, wrap):
    server = SplitServer(wrap(bank), tail, Limits(max_batch=8, max_wait=0.25))
    with BackgroundServer(server, timeout=TIMEOUT) as running:
        with Client(running.address, bank, classifier[1], unit=0, window=8, timeout=TIMEOUT) as client:
            good = client.encode(images[:3])
            answers = client.send([good[0], b"\x03\x00\xff\x17", good[1], good[2][:len(good[2]) // 2], good[2]])
    assert server.batches == 1  # one tail call for the three good messages of the one batch
    for answer, expected in zip([answers[0], answers[2], answers[4]], local_answers(bank, tail, good)):
        assert_same_classification(answer, expected)
    for answer in (answers[1], answers[3]):
        assert not answer.ok and answer.error.code == ErrorCode.MALFORMED


def test_segmentation_answers_are_label_maps(images):
    torch.manual_seed(3)
    network = TinySegmenter().eval()
    head, tail_module = split(network, "body")
    bank = make_bank(head, images)
    tail = Tail(tail_module, bank.feature_shape, image_size=images.shape[-2:])
    assert tail.task == "segmentation"
    with BackgroundServer(SplitServer(bank, tail), timeout=TIMEOUT) as running:
        with Client(running.address, bank, head, unit=1, timeout=TIMEOUT) as client:
            assert tuple(client.describe().image_size) == (32, 32)
            messages = client.encode(images)
            answers = client.send(messages)
    for answer, expected in zip(answers, local_answers(bank, tail, messages)):
        assert answer.ok and answer.labels.shape == (1, 32, 32) and answer.labels.dtype == np.uint8
        assert np.array_equal(answer.labels, expected.labels)


class SkipOverTheCut(torch.nn.Module):
    """The stem's output is used after the cut too, so a tensor besides the feature crosses."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.body = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)
        return (self.body(a) + a).mean((2, 3))


def test_tail_refuses_cuts_it_cannot_serve(classifier, bank):
    _, needs_size = split(TinySegmenter().eval(), "body")
    with pytest.raises(ValueError, match="image_size"):
        Tail(needs_size, (16, 8, 8))
    _, needs_tensor = split(SkipOverTheCut().eval(), "body")
    with pytest.raises(ValueError, match="cannot be served"):
        Tail(needs_tensor, (4, 8, 8))
    with pytest.raises(ValueError, match="feature_shape"):
        Tail(classifier[2], (16, 8))
    with pytest.raises(ValueError, match="top_k"):
        Tail(classifier[2], bank.feature_shape, top_k=0)
    with pytest.raises(ValueError, match="bank codes features"):
        SplitServer(bank, Tail(classifier[2], (16, 4, 4)))


@pytest.mark.parametrize("field, value", [("max_batch", 0), ("max_in_flight", -1), ("max_message_bytes", 1.5),
                                          ("decode_workers", True), ("max_wait", -1), ("tail_threads", 0)])
def test_limits_are_checked(field, value):
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})


class ThreadCounting(torch.nn.Module):
    """A tail that notes torch's intra-op thread count of each call it runs in."""

    def __init__(self, tail: torch.nn.Module) -> None:
        super().__init__()
        self.tail, self.seen = tail, set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(torch.get_num_threads())
        return self.tail(x)


@pytest.mark.parametrize("threads", [1, 3])
def test_the_tail_runs_with_tail_threads(bank, classifier, images, threads):
    counting = ThreadCounting(classifier[2])
    tail = Tail(counting, bank.feature_shape)
    counting.seen.clear()  # the probe at construction ran on this thread
    # Messages that arrive together are decoded on the pool (a bank without decode_many), whose
    # threads start (and set their own count) before the tail's first call: the tail's count must
    # survive that.
    limits = Limits(tail_threads=threads, decode_workers=2, max_wait=0.25)
    with BackgroundServer(SplitServer(DecodeOnly(bank), tail, limits), timeout=TIMEOUT) as running:
        with Client(running.address, bank, classifier[1], unit=0, window=8, timeout=TIMEOUT) as client:
            assert all(a.ok for a in client.send(client.encode(images)))
    assert counting.seen == {threads}


def test_use_torch_threads_holds_against_other_threads():
    seen = []
    set_own, other_done = threading.Event(), threading.Event()

    def own() -> None:
        use_torch_threads(3)
        set_own.set()
        other_done.wait(TIMEOUT)
        seen.append(torch.get_num_threads())

    def other() -> None:
        set_own.wait(TIMEOUT)
        torch.set_num_threads(1)
        other_done.set()

    before = torch.get_num_threads()
    try:
        threads = [threading.Thread(target=own), threading.Thread(target=other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    finally:
        torch.set_num_threads(before)
    assert seen == [3]


def test_server_listens_where_it_is_told(bank, tail):
    with BackgroundServer(SplitServer(bank, tail), "127.0.0.1:0", timeout=TIMEOUT) as running:
        assert running.host == "127.0.0.1" and running.port > 0
        with grpc.insecure_channel(running.address) as channel:
            grpc.channel_ready_future(channel).result(TIMEOUT)
        with pytest.raises(OSError, match="cannot listen"):  # the port is taken
            with BackgroundServer(SplitServer(bank, tail), running.address, timeout=TIMEOUT):
                pass
    with pytest.raises(ValueError, match="port"):
        with BackgroundServer(SplitServer(bank, tail), "127.0.0.1:99999", timeout=TIMEOUT):
            pass
