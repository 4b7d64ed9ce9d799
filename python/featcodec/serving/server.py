"""The split-inference server: rate-bank messages in, the tail's answers out.

Each stream (``Infer``) is read by one coroutine, which parses a message's
request, checks its size and puts it in a queue.  A batcher takes what has
arrived together, up to ``max_batch`` messages, waiting at most
``max_wait`` for more, and answers them on its own thread in two phases:
the bank decodes them, then the tail runs on their images in one call (at
most ``max_batch`` images a call) with ``tail_threads`` torch intra-op
threads (every core by default).  A RateBank decodes the batch in one
``decode_many`` call on that thread: each message is checked and
entropy-decoded alone, and each unit's synthesis runs once on all of its
messages, with the tail's threads (for small messages the synthesis's
per-call cost is most of decoding).  A bank without ``decode_many`` decodes
a message a thread on a pool (``decode_workers``, one per core by default;
the entropy decoder and torch release the GIL).

The phases take turns rather than overlap.  The tail is most of a
message's work, so it gets every core; its OpenMP team waits at each
operator's barrier for its slowest thread, so a decoder holding one of the
team's cores stalls all of them (on 2 cores, decoding beside a 2-thread
tail took 15 % more CPU an image than taking turns, and a tail held to one
core ran at half the in-process rate).  While the batcher works, the next
messages wait in the queue and form the next batch.  Each message gets
exactly one reply with its id: the answer, or an error for that message
alone; the stream and the server go on.

Torch's OpenMP runtime (libgomp) spins at a barrier only while the process
has no more OpenMP threads than cores, and a thread that once ran torch with
several threads keeps its team until it ends.  So the decoders run torch on
one thread each, the server's threads end when it stops, and a process that
serves should run torch on its other threads with one thread
(``torch.set_num_threads(1)`` before loading the network; ``featcodec
serve`` does): one idle 2-thread team elsewhere slowed the tail on 2 cores
by a quarter.

What a request may cost is bounded: a message over ``max_message_bytes`` is
refused before it is decoded (a frame over twice that ends its stream), a stream has
at most ``max_in_flight`` messages being answered (beyond that the server
stops reading it and HTTP/2 flow control holds the client back), a message
may hold at most ``max_batch`` images, and at most ``max_streams`` streams
are open at once.  The server keeps nothing about a client between
messages, so replicas behind any gRPC load balancer are interchangeable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Protocol, Tuple, Union

import grpc
import torch
from google.protobuf.message import DecodeError as ProtobufDecodeError

from .._coding import DecodeError
from ..bank import RateBank
from . import inference_pb2 as pb
from ._protocol import DESCRIBE, INFER, SERVICE, ErrorCode, classification_reply, error_reply, segmentation_reply
from .tail import Tail, TailOutput

log = logging.getLogger("featcodec.serving")

# gRPC reads frames up to twice max_message_bytes (plus the request's own
# framing), so a message somewhat over the limit gets a TOO_LARGE reply and
# the stream goes on; a frame beyond that ends the stream (RESOURCE_EXHAUSTED).
_FRAMING_SLACK = 64


def frame_limit(max_message_bytes: int) -> int:
    """The largest gRPC frame the server reads for a given max_message_bytes."""
    return 2 * max_message_bytes + _FRAMING_SLACK


class Bank(Protocol):
    """What the server needs of a rate bank (featcodec.bank.RateBank).

    A bank may also have ``decode_many(messages)`` as RateBank does (each
    message's (features, unit) or its exception, in order); the server then
    decodes a batch with it.
    """

    feature_shape: Tuple[int, int, int]

    def decode(self, data: bytes) -> Tuple[torch.Tensor, int]: ...


@dataclass(frozen=True)
class Limits:
    """What one request, one stream and the whole server may cost.

    max_message_bytes: the largest bank message decoded;
    max_in_flight: messages of one stream being answered at once;
    max_batch: images in one message and in one tail call, messages in one batch;
    max_wait: seconds the batcher waits for more messages once it has one;
    max_streams: streams open at once (more are refused by gRPC);
    decode_workers: threads decoding messages, for banks without decode_many
    (default: one per core; 1: the tail's thread decodes, with the tail's
    torch threads);
    tail_threads: torch intra-op threads of the tail's calls (default: one per core).
    """

    max_message_bytes: int = 1 << 20
    max_in_flight: int = 64
    max_batch: int = 32
    max_wait: float = 0.002
    max_streams: int = 1024
    decode_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    tail_threads: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_in_flight", "max_batch", "max_streams", "decode_workers",
                     "tail_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.max_wait <= 10:
            raise ValueError(f"max_wait must be in [0, 10] seconds, got {self.max_wait!r}")


def use_torch_threads(count: int) -> None:
    """Sets the calling thread's torch intra-op thread count, for good.

    torch gives a thread its count when the thread first needs one, from the
    last ``torch.set_num_threads`` made by any thread: a new thread that set
    its own count and ran nothing yet lost it to the next thread that set
    another (a tail set to 2 threads ran on the decoders' 1).  Asking for
    the count first settles it, so the thread's own setting stays.
    """
    torch.get_num_threads()
    torch.set_num_threads(count)


class _Refused(Exception):
    """A message answered with an error reply."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


_Decoded = Tuple[torch.Tensor, int]
"""A decoded message: its features (N, C, H, W) and the unit that coded it."""
_Answer = Tuple[TailOutput, int]
"""A message's answer: the tail's rows for its images, and the unit that coded it."""


@dataclass
class _Pending:
    message: bytes
    answer: "asyncio.Future[_Answer]"


class _Batcher:
    """Answers what has arrived together: up to max_batch messages, waiting at most max_wait.

    decode: a message -> (features (N, C, H, W), unit), raising _Refused for
    a message that is not answered; it runs on the decoding pool, or on the
    batcher's own thread when a batch has one message or the pool one thread.
    decode_many: the messages -> each one's decode() or _Refused, all on
    the batcher's thread (with the tail's torch threads); used instead of
    decode when given.
    """

    def __init__(self, tail: Tail, limits: Limits, decode: Callable[[bytes], _Decoded],
                 decode_many: Optional[Callable[[List[bytes]], List[Union[_Decoded, _Refused]]]] = None) -> None:
        self.tail, self.limits, self.decode, self.decode_many = tail, limits, decode, decode_many
        self.queue: "asyncio.Queue[_Pending]" = asyncio.Queue()
        self.runner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="featcodec-tail",
                                                            initializer=use_torch_threads,
                                                            initargs=(limits.tail_threads,))
        # One torch thread a decoder: an OpenMP team of their own would leave the process more
        # OpenMP threads than cores, and libgomp then all but stops spinning at barriers, which
        # slowed the tail by a quarter on 2 cores.
        self.decoders = concurrent.futures.ThreadPoolExecutor(limits.decode_workers,
                                                              thread_name_prefix="featcodec-decode",
                                                              initializer=use_torch_threads, initargs=(1,))
        self.batches = 0
        self.images = 0
        self.largest = 0

    async def answer(self, message: bytes) -> _Answer:
        pending = _Pending(message, asyncio.get_running_loop().create_future())
        self.queue.put_nowait(pending)
        return await pending.answer

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(await self.queue.get(), loop)
            batch = [p for p in batch if not p.answer.done()]  # cancelled: the stream went away
            if batch:
                await self._run_batch(batch, loop)

    async def _collect(self, first: _Pending, loop: asyncio.AbstractEventLoop) -> List[_Pending]:
        batch = [first]
        deadline = loop.time() + self.limits.max_wait
        while len(batch) < self.limits.max_batch:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            batch.append(item)
        return batch

    async def _run_batch(self, batch: List[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        try:
            outcomes = await loop.run_in_executor(self.runner, self._answer_all, [p.message for p in batch])
        except Exception as error:  # a bug here must not cost the batch its replies
            log.exception("answering a batch of %d messages failed", len(batch))
            outcomes = [_Refused(ErrorCode.INTERNAL, f"{type(error).__name__}: {error}")] * len(batch)
        for p, outcome in zip(batch, outcomes):
            if p.answer.done():
                continue
            if isinstance(outcome, _Refused):
                p.answer.set_exception(outcome)
            else:
                p.answer.set_result(outcome)

    def _answer_all(self, messages: List[bytes]) -> List[Union[_Answer, _Refused]]:
        """Decodes the messages, then runs the tail on their images (on the batcher's thread)."""
        decoded = self._decode_all(messages)
        outcomes: Dict[int, Union[_Answer, _Refused]] = {
            i: item for i, item in enumerate(decoded) if isinstance(item, _Refused)}
        ready = [(i, item) for i, item in enumerate(decoded) if not isinstance(item, _Refused)]
        for call in self._tail_calls(ready):
            features = [features for _, (features, _) in call]
            try:
                output = self.tail(features[0] if len(features) == 1 else torch.cat(features))
            except Exception as error:  # every message of the call gets the error
                log.exception("the tail failed on a batch of %d messages", len(call))
                for i, _ in call:
                    outcomes[i] = _Refused(ErrorCode.INTERNAL, f"the tail failed: {error}")
                continue
            start = 0
            for i, (f, unit) in call:
                outcomes[i] = (output.rows(start, start + f.shape[0]), unit)
                start += f.shape[0]
            self.batches += 1
            self.images += start
            self.largest = max(self.largest, start)
        return [outcomes[i] for i in range(len(messages))]

    def _decode_all(self, messages: List[bytes]) -> List[Union[_Decoded, _Refused]]:
        if self.decode_many is not None:
            return self.decode_many(messages)
        if len(messages) == 1 or self.limits.decode_workers == 1:  # here, with every tail thread
            return [self._decode_one(m) for m in messages]
        return list(self.decoders.map(self._decode_one, messages))

    def _decode_one(self, message: bytes) -> Union[_Decoded, _Refused]:
        try:
            return self.decode(message)
        except _Refused as refused:
            return refused

    def _tail_calls(self, ready: List[Tuple[int, _Decoded]]) -> List[List[Tuple[int, _Decoded]]]:
        """The decoded messages in order, grouped into tail calls of at most max_batch images."""
        calls: List[List[Tuple[int, _Decoded]]] = []
        images = self.limits.max_batch
        for item in ready:
            count = item[1][0].shape[0]
            if images + count > self.limits.max_batch:
                calls.append([])
                images = 0
            calls[-1].append(item)
            images += count
        return calls

    def shutdown(self) -> None:
        """Ends the threads (after the batch being answered, if any), and with them their OpenMP teams."""
        for pool in (self.runner, self.decoders):
            pool.shutdown(wait=True, cancel_futures=True)


class SplitServer:
    """Serves one bank and one tail over gRPC (see the module docstring).

    bank: decodes messages into features (N, C, H, W) and names the unit;
    tail: a :class:`~featcodec.serving.tail.Tail` for the bank's feature
    shape; network, split, fingerprint: what ``Describe`` reports, so a
    client can check it holds the same deployment.
    """

    def __init__(self, bank: Bank, tail: Tail, limits: Limits = Limits(), *, network: str = "", split: str = "",
                 fingerprint: str = "") -> None:
        if tuple(bank.feature_shape) != tail.feature_shape:
            raise ValueError(f"the bank codes features {tuple(bank.feature_shape)}, the tail takes {tail.feature_shape}")
        self.bank, self.tail, self.limits = _bounded(bank, limits.max_batch), tail, limits
        if not fingerprint and isinstance(bank, RateBank):
            fingerprint = bank_fingerprint(bank)
        self.info = pb.ServerInfo(
            network=network, split=split, feature_shape=list(tail.feature_shape),
            image_size=list(tail.image_size or ()), task=tail.task, units=len(getattr(bank, "units", ())),
            bank_fingerprint=fingerprint, top_k=tail.top_k, max_message_bytes=limits.max_message_bytes,
            max_in_flight=limits.max_in_flight, max_batch=limits.max_batch)
        self.requests = 0
        self.errors = 0
        self._server: Optional[grpc.aio.Server] = None
        self._batcher: Optional[_Batcher] = None
        self._batching: Optional["asyncio.Task[None]"] = None

    # --- life cycle ------------------------------------------------------------

    async def start(self, address: str = "127.0.0.1:0") -> int:
        """Listens on ``address`` (host:port; port 0 picks a free one) and returns the port."""
        if self._server is not None:
            raise RuntimeError("the server is already started")
        self._server = grpc.aio.server(
            maximum_concurrent_rpcs=self.limits.max_streams,
            options=[("grpc.max_receive_message_length", frame_limit(self.limits.max_message_bytes)),
                     ("grpc.so_reuseport", 0)])
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "Infer": grpc.stream_stream_rpc_method_handler(
                self._infer, request_deserializer=None, response_serializer=pb.InferReply.SerializeToString),
            "Describe": grpc.unary_unary_rpc_method_handler(
                self._describe, request_deserializer=pb.DescribeRequest.FromString,
                response_serializer=pb.ServerInfo.SerializeToString),
        })
        self._server.add_generic_rpc_handlers((handler,))
        try:
            port = self._server.add_insecure_port(_checked_address(address))
        except RuntimeError as error:
            self._server = None
            raise OSError(f"cannot listen on {address}: {error}") from None
        many = self._decoded_many if callable(getattr(self.bank, "decode_many", None)) else None
        self._batcher = _Batcher(self.tail, self.limits, self._decoded, many)
        self._batching = asyncio.get_running_loop().create_task(self._batcher.run())
        await self._server.start()
        log.info("serving %s at %s on port %d", self.info.split or "a tail", address, port)
        return port

    async def wait(self) -> None:
        assert self._server is not None, "start() first"
        await self._server.wait_for_termination()

    async def stop(self, grace: Optional[float] = 1.0) -> None:
        """Stops taking streams, lets open ones finish for ``grace`` seconds, then ends them."""
        if self._server is None:
            return
        await self._server.stop(grace)
        if self._batching is not None:
            self._batching.cancel()
            await asyncio.gather(self._batching, return_exceptions=True)
        if self._batcher is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._batcher.shutdown)
        self._server = None

    @property
    def batches(self) -> int:
        """Tail calls made so far (images / batches is the mean batch)."""
        return self._batcher.batches if self._batcher else 0

    @property
    def batched_images(self) -> int:
        return self._batcher.images if self._batcher else 0

    @property
    def largest_batch(self) -> int:
        return self._batcher.largest if self._batcher else 0

    # --- the service -------------------------------------------------------------

    async def _describe(self, request: pb.DescribeRequest, context: Any) -> pb.ServerInfo:
        return self.info

    async def _infer(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[pb.InferReply]:
        # A message holds its slot until its reply is handed to gRPC, which waits for the client's
        # flow control: a client that stops reading replies stops being read, its replies do not pile up.
        slots = asyncio.Semaphore(self.limits.max_in_flight)
        replies: "asyncio.Queue[Optional[pb.InferReply]]" = asyncio.Queue()
        reader = asyncio.get_running_loop().create_task(self._read(requests, replies, slots))
        try:
            while True:
                reply = await replies.get()
                if reply is None:
                    break
                yield reply
                slots.release()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, requests: AsyncIterator[bytes], replies: "asyncio.Queue[Optional[pb.InferReply]]",
                    slots: asyncio.Semaphore) -> None:
        """Reads the stream, a slot per message until its reply is sent; None marks the end."""
        answering: "set[asyncio.Task[None]]" = set()

        async def answer(raw: bytes) -> None:
            replies.put_nowait(await self._reply_to(raw))

        loop = asyncio.get_running_loop()
        try:
            async for raw in requests:
                await slots.acquire()
                task = loop.create_task(answer(raw))
                answering.add(task)
                task.add_done_callback(answering.discard)
            if answering:
                await asyncio.gather(*answering)
        finally:
            for task in answering:
                task.cancel()
            replies.put_nowait(None)

    async def _reply_to(self, raw: bytes) -> pb.InferReply:
        self.requests += 1
        request_id = 0
        try:
            try:
                request = pb.InferRequest.FromString(raw)
            except ProtobufDecodeError as error:
                raise _Refused(ErrorCode.MALFORMED, f"not an InferRequest: {error}") from None
            request_id = request.id
            self._check_size(request.message)
            output, unit = await self._batch().answer(request.message)
        except _Refused as refused:
            self.errors += 1
            return error_reply(request_id, refused.code, str(refused))
        except Exception as error:  # a bug here must not cost the message its reply
            log.exception("answering a message failed")
            self.errors += 1
            return error_reply(request_id, ErrorCode.INTERNAL, f"{type(error).__name__}: {error}")
        if output.labels is not None:
            return segmentation_reply(request_id, unit, output.labels)
        assert output.classes is not None and output.probabilities is not None
        return classification_reply(request_id, unit, output.classes, output.probabilities)

    def _batch(self) -> _Batcher:
        assert self._batcher is not None
        return self._batcher

    def _check_size(self, message: bytes) -> None:
        if len(message) > self.limits.max_message_bytes:
            raise _Refused(ErrorCode.TOO_LARGE, f"message of {len(message)} bytes; this server takes at most "
                                                f"{self.limits.max_message_bytes}")
        if not message:
            raise _Refused(ErrorCode.MALFORMED, "empty message")

    def _decoded(self, message: bytes) -> _Decoded:
        """The message's features and unit (on a decoding thread); _Refused when it is not answered."""
        try:
            with torch.inference_mode():
                features, unit = self.bank.decode(message)
        except Exception as error:
            raise _refusal(error) from None
        return self._checked(features, unit)

    def _decoded_many(self, messages: List[bytes]) -> List[Union[_Decoded, _Refused]]:
        """The messages' features and units by the bank's decode_many (on the batcher's thread)."""
        with torch.inference_mode():
            decoded = self.bank.decode_many(messages)  # type: ignore[attr-defined]  # checked at start()
        results: List[Union[_Decoded, _Refused]] = []
        for item in decoded:
            try:
                if isinstance(item, Exception):
                    raise _refusal(item)
                results.append(self._checked(*item))
            except _Refused as refused:
                results.append(refused)
        return results

    def _checked(self, features: torch.Tensor, unit: int) -> _Decoded:
        if features.dim() != 4 or tuple(features.shape[1:]) != self.tail.feature_shape:
            raise _Refused(ErrorCode.MALFORMED, f"the message decodes to features {tuple(features.shape)}, "
                                                f"this server's tail takes (N, *{self.tail.feature_shape})")
        if not 1 <= features.shape[0] <= self.limits.max_batch:
            raise _Refused(ErrorCode.TOO_LARGE, f"message of {features.shape[0]} images; this server takes at most "
                                                f"{self.limits.max_batch} a message")
        return features.float().contiguous(), int(unit)


def _refusal(error: Exception) -> _Refused:
    """The reply to a message whose decoding raised ``error``."""
    if isinstance(error, _Refused):
        return error
    if isinstance(error, (DecodeError, ValueError, TypeError)):
        # The bank's header check names max_elements when a message asks for more images than allowed.
        code = ErrorCode.TOO_LARGE if "max_elements" in str(error) else ErrorCode.MALFORMED
        return _Refused(code, f"{type(error).__name__}: {error}")
    log.error("decoding a message failed", exc_info=error)
    return _Refused(ErrorCode.INTERNAL, f"{type(error).__name__}: {error}")


def bank_fingerprint(bank: RateBank) -> str:
    """Hex digest naming a bank's units and feature shape (what Describe reports, for a client to compare)."""
    digest = hashlib.sha256(repr(tuple(bank.feature_shape)).encode())
    for unit in bank.units:
        digest.update(bytes.fromhex(unit.fingerprint))
    return digest.hexdigest()[:32]


def _bounded(bank: Bank, max_images: int) -> Bank:
    """The bank with its header check refusing messages of more than max_images images before decoding.

    A RateBank's codecs refuse a header asking for more than max_elements
    feature values before allocating anything; the limit is a deployment
    option, not part of a unit's fingerprint, so messages decode as before.
    Other banks are checked after decoding only.
    """
    if not isinstance(bank, RateBank):
        return bank
    c, h, w = bank.feature_shape
    bounded = RateBank(bank.feature_shape, bank.split, bank.network, checksum=bank.checksum,
                       max_elements=max_images * c * h * w)
    for unit in bank.units:
        bounded.add(bank.codec(unit.id), bpp=unit.bpp, metric=unit.metric)
    return bounded


def _checked_address(address: str) -> str:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must be host:port with a port in [0, 65535], got {address!r}")
    return address


class BackgroundServer:
    """A SplitServer on its own event loop thread, for scripts and tests.

    ``with BackgroundServer(server, "127.0.0.1:0") as running: running.address``;
    leaving the block stops the server (within ``grace`` seconds, and the
    thread within ``timeout``).
    """

    def __init__(self, server: SplitServer, address: str = "127.0.0.1:0", *, grace: float = 0.5,
                 timeout: float = 30.0) -> None:
        self.server, self.grace, self.timeout = server, grace, timeout
        self.host = address.rsplit(":", 1)[0]
        self._address = address
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="featcodec-server", daemon=True)
        self.port = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> "BackgroundServer":
        self._thread.start()
        try:
            self.port = asyncio.run_coroutine_threadsafe(self.server.start(self._address), self._loop).result(
                self.timeout)
        except BaseException:
            self._close_loop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(self.grace), self._loop).result(self.timeout)
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout)
        if not self._thread.is_alive():
            self._loop.close()


def serve_forever(server: SplitServer, address: str, *, stop_after: Optional[float] = None) -> None:
    """Runs ``server`` on ``address`` until interrupted, or for ``stop_after`` seconds."""

    async def main() -> None:
        port = await server.start(address)
        print(f"featcodec serve: listening on {address.rsplit(':', 1)[0]}:{port}", flush=True)
        try:
            if stop_after is None:
                await server.wait()
            else:
                await asyncio.wait_for(server.wait(), stop_after)
        except asyncio.TimeoutError:
            pass
        finally:
            await server.stop(1.0)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


__all__ = ["Bank", "BackgroundServer", "Limits", "SplitServer", "bank_fingerprint", "serve_forever",
           "use_torch_threads"]
