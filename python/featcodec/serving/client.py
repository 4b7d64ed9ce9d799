"""The split-inference client: runs the head and the bank's encoder, streams the messages.

One gRPC stream carries any number of messages, so a message of a few dozen
bytes costs its bytes and a few of framing, not an HTTP request.  A
:class:`Stream` keeps up to ``window`` messages in flight and matches the
replies (which may come out of order) to them by id.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import queue
import threading
import time
from typing import Any, Iterator, List, Optional, Sequence

import grpc

from . import inference_pb2 as pb
from ._protocol import DESCRIBE, INFER, Answer, answer_of

_MAX_REPLY_BYTES = 256 << 20  # a batch of large label maps


class StreamClosed(ConnectionError):
    """The stream ended (server gone, deadline passed, cancelled) before a message's reply came."""


class Stream:
    """One open Infer stream; ``submit(message)`` returns a future of its :class:`Answer`.

    At most ``window`` messages are in flight: ``submit`` blocks (up to
    ``timeout`` seconds) until a reply frees a place.  ``close()`` ends the
    stream after the replies in flight; ``cancel()`` ends it now.
    """

    def __init__(self, channel: grpc.Channel, *, window: int = 32, deadline: Optional[float] = None,
                 timeout: float = 60.0) -> None:
        if window < 1:
            raise ValueError(f"window must be positive, got {window}")
        self.timeout = timeout
        self._outgoing: "queue.Queue[Optional[pb.InferRequest]]" = queue.Queue()
        self._slots = threading.BoundedSemaphore(window)
        self._pending: "dict[int, concurrent.futures.Future[Answer]]" = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._ended: Optional[BaseException] = None
        infer = channel.stream_stream(INFER, request_serializer=pb.InferRequest.SerializeToString,
                                      response_deserializer=pb.InferReply.FromString)
        self._call = infer(self._requests(), timeout=deadline)
        self._reader = threading.Thread(target=self._read, name="featcodec-client-reader", daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[pb.InferRequest]:
        while True:
            request = self._outgoing.get()
            if request is None:
                return
            yield request

    def submit(self, message: bytes) -> "concurrent.futures.Future[Answer]":
        """Sends one bank message; the future gives its Answer (or raises StreamClosed)."""
        if not isinstance(message, (bytes, bytearray, memoryview)):
            raise TypeError(f"message must be bytes, got {type(message).__name__}")
        if not self._slots.acquire(timeout=self.timeout):
            raise TimeoutError(f"no reply freed a place in the window within {self.timeout} s")
        future: "concurrent.futures.Future[Answer]" = concurrent.futures.Future()
        with self._lock:
            if self._ended is not None:
                self._slots.release()
                raise StreamClosed(f"the stream has ended: {self._ended}")
            request_id = next(self._ids)
            self._pending[request_id] = future
        self._outgoing.put(pb.InferRequest(id=request_id, message=bytes(message)))
        return future

    def _read(self) -> None:
        ended: BaseException = StreamClosed("the server ended the stream before replying")
        try:
            for reply in self._call:
                with self._lock:
                    future = self._pending.pop(reply.id, None)
                if future is not None:  # a reply to no message of ours (id 0: a frame it could not read)
                    self._slots.release()
                    future.set_result(answer_of(reply))
        except grpc.RpcError as error:
            ended = StreamClosed(f"{error.code().name}: {error.details()}")
        finally:
            with self._lock:
                self._ended = ended
                pending, self._pending = self._pending, {}
            for future in pending.values():
                future.set_exception(ended)

    def close(self) -> None:
        """Ends the stream once the messages in flight are answered (waits up to ``timeout``)."""
        self._outgoing.put(None)
        self._reader.join(self.timeout)
        if self._reader.is_alive():
            self.cancel()
            self._reader.join(self.timeout)

    def cancel(self) -> None:
        self._call.cancel()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """Talks to a featcodec server at ``target`` ("host:port").

    bank: the same rate bank the server holds (featcodec.bank.RateBank);
    head: the network's head from ``featcodec.split.split`` (needed by
    :meth:`infer`, not by :meth:`send`); unit / target_bpp: how the bank
    picks a unit for each image (one of them); window: messages in flight
    per stream; timeout: seconds any wait may take::

        with Client("127.0.0.1:50051", bank, head, target_bpp=0.01) as client:
            client.check_server()                    # the server holds the same bank
            answers = client.infer(images)           # one Answer per image
            answers[0].classes, answers[0].probabilities
    """

    def __init__(self, target: str, bank: Any = None, head: Any = None, *, unit: Optional[int] = None,
                 target_bpp: Optional[float] = None, window: int = 32, timeout: float = 60.0,
                 options: Sequence[tuple] = ()) -> None:
        if unit is not None and target_bpp is not None:
            raise ValueError("give unit or target_bpp, not both")
        self.bank, self.head = bank, head
        if head is not None:
            head.eval()  # once: coding never switches modules' modes afterwards
        self.unit, self.target_bpp = unit, target_bpp
        self.window, self.timeout = window, timeout
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", _MAX_REPLY_BYTES),
                                                              *options])

    def describe(self) -> pb.ServerInfo:
        """What the server holds (network, cut, feature shape, task, limits)."""
        call = self.channel.unary_unary(DESCRIBE, request_serializer=pb.DescribeRequest.SerializeToString,
                                        response_deserializer=pb.ServerInfo.FromString)
        return call(pb.DescribeRequest(), timeout=self.timeout)

    def check_server(self) -> pb.ServerInfo:
        """Describe, and ValueError unless the server holds this client's bank (feature shape, units)."""
        from .server import bank_fingerprint

        info = self.describe()
        if self.bank is None:
            return info
        if tuple(info.feature_shape) != tuple(self.bank.feature_shape):
            raise ValueError(f"the server takes features {tuple(info.feature_shape)}, this client's bank codes "
                             f"{tuple(self.bank.feature_shape)}")
        if info.bank_fingerprint and info.bank_fingerprint != bank_fingerprint(self.bank):
            raise ValueError("the server holds another bank (its fingerprint differs from this client's)")
        return info

    def stream(self, deadline: Optional[float] = None) -> Stream:
        """A new stream (close it, or use it in a with block)."""
        return Stream(self.channel, window=self.window, deadline=deadline, timeout=self.timeout)

    def encode(self, images: Any) -> List[bytes]:
        """One bank message per image: head, then the bank's encoder."""
        import torch

        from ..split import feature_of

        if self.head is None or self.bank is None:
            raise ValueError("encoding needs the client's head and bank")
        if self.unit is None and self.target_bpp is None:
            raise ValueError("give the client a unit or a target_bpp")
        choice = {"unit": self.unit} if self.unit is not None else {"target_bpp": self.target_bpp}
        with torch.inference_mode():
            crossing = self.head(images)
            if isinstance(crossing, tuple) and any(isinstance(v, torch.Tensor) for v in crossing[1:]):
                raise ValueError("the head's cut passes a tensor besides the feature; a bank message cannot carry it")
            features = feature_of(crossing)
            return [self.bank.encode(features[i:i + 1], **choice) for i in range(features.shape[0])]

    def infer(self, images: Any) -> List[Answer]:
        """The server's answer for each image (in order)."""
        return self.send(self.encode(images))

    def send(self, messages: Sequence[bytes]) -> List[Answer]:
        """Streams bank messages and returns their Answers in order (errors are Answers with ``error``)."""
        deadline = time.monotonic() + self.timeout
        with self.stream(deadline=self.timeout) as stream:
            futures = [stream.submit(m) for m in messages]
            return [f.result(max(0.0, deadline - time.monotonic())) for f in futures]

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
