"""Load test of featcodec.serving: a server on loopback, N client streams, real and malformed messages.

    python benchmarks/serving.py [--streams 32] [--requests 1000] [--json out.json]
    python benchmarks/serving.py --split layer4.2 --image-size 224 --weights resnet50.pth --bank bank.fcb

The server runs in this process (its own event loop thread, decode pool and
tail thread, the tail with ``--tail-threads`` torch threads); the clients
run in a child process, one gRPC channel and one stream per client thread,
each with ``--window`` messages in flight.  Every
message is a real bank message made here from an image through the head
and a unit's encoder; ``--malformed`` of them are replaced by broken ones
(garbage, empty, truncated, header byte only, over the size limit).

Printed (and written by ``--json``):
- requests sent, replies, lost (sent and never answered), errors;
- wrong answers: a valid message whose top-k classes differ from running
  decode + tail locally on it alone, or whose probabilities differ by more
  than 1e-4 relative (different batch sizes may round differently; a swap of
  two classes whose local probabilities are that close is counted apart as
  a tie, not as wrong);
- malformed messages answered with an error (should be all of them);
- latency p50/p99 (submit to reply, per message), throughput (answered valid
  images per second over the run), the server's mean batch;
- in-process decode + tail at the server's mean batch size (the same bank
  and tail, no gRPC), four ways: decoding one message after another and
  the tail, all with ``--threads`` torch threads; decoding on a pool
  (``--decode-workers`` threads of one torch thread) and the tail with
  ``--tail-threads``; one after another with torch on every core; and the
  batch by one ``bank.decode_many`` call and the tail, both with
  ``--tail-threads``, as the server does; the ratio server / the fastest
  of the four (target >= 0.8);
- ``--rounds`` rounds of the load run, each followed by the in-process
  runs: the machine may be shared, so the figures are of the median
  round by ratio, and every round's ratio is printed;
- CPU time over the run of the server's process and of the clients' (the
  clients share the machine's cores), and images per CPU-second of the
  server beside those of the fastest in-process run.  In a deployment the
  clients run elsewhere; here they share the server's cores, and the
  tail's OpenMP team stalls at each barrier while a client thread holds
  one of its cores (on 2 cores, a process busy 14 % of one core cost
  in-process decode + tail 14 % of its throughput), so the ratio is a
  lower bound;
- bytes per message: the bank message, the InferRequest, the gRPC message
  (+5 bytes of length prefix), and the bytes a client actually writes to the
  socket per message in a long stream, counted by a TCP relay (HTTP/2
  framing included; stream setup excluded by measuring two stream lengths).

Default setting (about a minute on 2 cores): random-weight ResNet-50 at
128x128 cut at layer3.4 (1024x8x8 features, so the tail has real work),
two random dws units (C_r 16 and 32, S 2) whose priors are fitted to their
codes.  Without ``--weights`` the network is random and so are the units:
the figures are of the serving machinery, not of accuracy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

MALFORMED_KINDS = ("garbage", "empty", "truncated", "header only", "too large")
PROBABILITY_RTOL = 1e-4


# --- building the deployment (parent process) ---------------------------------------------


def build(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    from featcodec.serving import Tail, load_network
    from featcodec.split import feature_of, split

    torch.manual_seed(args.seed)
    network = load_network(args.model, args.weights, args.num_classes)
    head, tail_module = split(network, args.split)
    generator = torch.Generator().manual_seed(args.seed + 1)
    images = torch.randn(args.pool, 3, args.image_size, args.image_size, generator=generator)
    with torch.inference_mode():
        features = torch.cat([feature_of(head(images[i:i + 8])) for i in range(0, args.pool, 8)])
    bank = load_or_make_bank(args, features)
    image_size = (args.image_size, args.image_size) if args.model.startswith("deeplab") else None
    tail = Tail(tail_module, bank.feature_shape, image_size=image_size, top_k=args.top_k)
    units = len(bank.units)
    messages = [bank.encode(features[i:i + 1], unit=i % units) for i in range(args.pool)]
    expected = [tail(bank.decode(m)[0]) for m in messages]
    return {"bank": bank, "tail": tail, "messages": messages, "expected": expected, "features": features}


def load_or_make_bank(args: argparse.Namespace, features: Any) -> Any:
    """The bank from --bank, or random dws units with priors fitted to their codes on these features."""
    import torch

    from featcodec.bank import RateBank
    from featcodec.codec import FeatureCodec, fit_prior
    from featcodec.split import make_unit

    if args.bank:
        return RateBank.load(args.bank)
    bank = RateBank(feature_shape=tuple(features.shape[1:]), split=args.split, network=args.model)
    for index, channels in enumerate(args.units):
        torch.manual_seed(args.seed + 100 + index)
        unit = make_unit("dws", features.shape[1], channels, 2).eval()
        prior = fit_prior(unit, features, args.q_step, epochs=20, batch_size=8, progress=False)
        codec = FeatureCodec(unit.encoder, unit.decoder, prior, q_step=args.q_step)
        bits = 8 * np.mean([len(codec.encode(features[i:i + 1])) for i in range(min(8, len(features)))])
        bank.add(codec, bpp=float(bits / args.image_size ** 2), metric=0.0)
    return bank


def malformed(kind: str, good: bytes, rng: np.random.Generator, max_bytes: int) -> bytes:
    if kind == "garbage":
        return rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    if kind == "empty":
        return b""
    if kind == "truncated":
        return good[: max(1, len(good) // 2)]
    if kind == "header only":
        return good[:1]
    if kind == "too large":
        return good + bytes(max_bytes + 1)
    raise ValueError(kind)


def plan(args: argparse.Namespace, messages: Sequence[bytes]) -> List[List[Tuple[int, str, int, bytes]]]:
    """Per stream: (request number, kind, pool index or -1, bytes), --requests in all."""
    rng = np.random.default_rng(args.seed)
    streams: List[List[Tuple[int, str, int, bytes]]] = [[] for _ in range(args.streams)]
    for number in range(args.requests):
        index = int(rng.integers(len(messages)))
        if rng.random() < args.malformed:
            kind = MALFORMED_KINDS[number % len(MALFORMED_KINDS)]
            item = (number, kind, -1, malformed(kind, messages[index], rng, args.max_message_bytes))
        else:
            item = (number, "valid", index, messages[index])
        streams[number % args.streams].append(item)
    return streams


# --- the clients (child process) ----------------------------------------------------------


def client_process(address: str, streams: List[List[Tuple[int, str, int, bytes]]], window: int, timeout: float,
                   results: Any) -> None:
    """One thread per stream; sends the stream's messages and records every reply and its latency."""
    import grpc

    from featcodec.serving import Client, StreamClosed

    records: Dict[int, Tuple[float, Any]] = {}
    lock = threading.Lock()
    start_line = threading.Barrier(len(streams) + 1)

    def run(items: List[Tuple[int, str, int, bytes]]) -> None:
        with Client(address, window=window, timeout=timeout) as client:
            grpc.channel_ready_future(client.channel).result(timeout)
            stream = client.stream(deadline=timeout)
            start_line.wait(timeout)
            for number, _, _, data in items:
                sent = time.perf_counter()

                def done(future: Any, number: int = number, sent: float = sent) -> None:
                    latency = time.perf_counter() - sent
                    try:
                        answer = future.result()
                        reply = (None if answer.error is None else int(answer.error.code),
                                 None if answer.classes is None else answer.classes,
                                 None if answer.probabilities is None else answer.probabilities,
                                 None if answer.labels is None else answer.labels)
                    except StreamClosed:
                        return
                    with lock:
                        records[number] = (latency, reply)

                stream.submit(data).add_done_callback(done)
            stream.close()

    threads = [threading.Thread(target=run, args=(items,), daemon=True) for items in streams]
    for t in threads:
        t.start()
    start_line.wait(timeout)
    began, cpu_began = time.perf_counter(), _cpu_seconds()
    for t in threads:
        t.join(timeout)
    results.put((time.perf_counter() - began, _cpu_seconds() - cpu_began, records))


def _cpu_seconds() -> float:
    """CPU time (user + system, all threads) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- measuring -------------------------------------------------------------------------------


def judge(streams: List[List[Tuple[int, str, int, bytes]]], records: Dict[int, Tuple[float, Any]],
          expected: Sequence[Any]) -> Dict[str, Any]:
    counts = {"requests": 0, "replies": 0, "lost": 0, "errors": 0, "valid": 0, "valid_answered": 0,
              "wrong_answers": 0, "ties": 0, "malformed": 0, "malformed_answered_with_error": 0}
    latencies = []
    for items in streams:
        for number, kind, index, _ in items:
            counts["requests"] += 1
            counts["valid" if kind == "valid" else "malformed"] += 1
            if number not in records:
                counts["lost"] += 1
                continue
            latency, (error, classes, probabilities, labels) = records[number]
            counts["replies"] += 1
            latencies.append(latency)
            if error is not None:
                counts["errors"] += 1
                if kind != "valid":
                    counts["malformed_answered_with_error"] += 1
                continue
            if kind != "valid":
                continue  # a malformed message answered as if valid: it shows as the gap above
            counts["valid_answered"] += 1
            verdict = compare(expected[index], classes, probabilities, labels)
            counts["wrong_answers"] += verdict == "wrong"
            counts["ties"] += verdict == "tie"
    lat = np.array(latencies) * 1e3
    counts["latency_ms_p50"] = float(np.percentile(lat, 50)) if len(lat) else None
    counts["latency_ms_p99"] = float(np.percentile(lat, 99)) if len(lat) else None
    return counts


def compare(expected: Any, classes: Any, probabilities: Any, labels: Any) -> str:
    if expected.labels is not None:
        return "right" if labels is not None and np.array_equal(labels, expected.labels) else "wrong"
    if classes is None:
        return "wrong"
    if np.array_equal(classes, expected.classes) and np.allclose(probabilities, expected.probabilities,
                                                                 rtol=PROBABILITY_RTOL, atol=1e-7):
        return "right"
    # Two classes whose local probabilities are within tolerance may swap places.
    if sorted(classes.ravel()) == sorted(expected.classes.ravel()) and np.allclose(
            np.sort(probabilities.ravel()), np.sort(expected.probabilities.ravel()), rtol=PROBABILITY_RTOL, atol=1e-7):
        return "tie"
    return "wrong"


def in_process(bank: Any, tail: Any, messages: Sequence[bytes], batch: int, images: int, workers: int,
               threads: int, tail_threads: Optional[int] = None, many: bool = False) -> Tuple[float, float]:
    """Images per second and per CPU-second of decode + tail in this process, in batches of ``batch``.

    workers: threads decoding a batch's messages (1: one after another, on
    this thread); threads: torch threads of each decoding thread;
    tail_threads: torch threads of the tail (default ``threads``), which
    then runs on the batch on this thread; many: the batch decoded by one
    ``bank.decode_many`` call on this thread instead.
    """
    import concurrent.futures

    import torch

    from featcodec.serving.server import use_torch_threads

    def decode(message: bytes) -> Any:
        with torch.inference_mode():
            return bank.decode(message)[0]

    pool = concurrent.futures.ThreadPoolExecutor(workers, initializer=use_torch_threads,
                                                 initargs=(threads,)) if workers > 1 else None
    before = torch.get_num_threads()
    done, start, cpu_start = 0, time.perf_counter(), _cpu_seconds()
    try:
        while done < images:
            group = [messages[(done + i) % len(messages)] for i in range(batch)]
            if many:
                torch.set_num_threads(threads)
                with torch.inference_mode():
                    decoded = [features for features, _ in bank.decode_many(group)]
            elif pool:
                decoded = list(pool.map(decode, group))
            else:
                torch.set_num_threads(threads)
                decoded = [decode(m) for m in group]
            torch.set_num_threads(tail_threads or threads)
            tail(torch.cat(decoded))
            done += batch
    finally:
        torch.set_num_threads(before)
        if pool:
            pool.shutdown()
    return done / (time.perf_counter() - start), done / max(_cpu_seconds() - cpu_start, 1e-9)


class CountingRelay:
    """A TCP relay on 127.0.0.1 that counts the bytes each direction carries."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = self.down = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await source.read(65536):
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                sink.close()

        try:
            await asyncio.gather(pump(reader, upstream_writer, True), pump(upstream_reader, writer, False))
        except asyncio.CancelledError:  # the relay is closing
            pass

    def __enter__(self) -> "CountingRelay":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _stop(self) -> None:
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def wire_bytes(port: int, messages: Sequence[bytes], short: int = 1, long: int = 6) -> Dict[str, float]:
    """Bytes a client writes and reads per message in a long stream of the pool's messages.

    Streams of ``short`` and ``long`` rounds through the pool; their
    difference is whole rounds, so setup cancels out and the per-message
    figure compares with the pool's mean message size.  One message in
    flight at a time, so the long stream's round trips are also the latency
    of an unloaded server.
    """
    from featcodec.serving import Client

    def one_stream(rounds: int) -> Tuple[int, int, List[float]]:
        with CountingRelay(port) as relay, Client(f"127.0.0.1:{relay.port}", window=1, timeout=60) as client:
            with client.stream() as stream:
                latencies = []
                for message in list(messages) * rounds:
                    sent = time.perf_counter()
                    assert stream.submit(message).result(60).ok
                    latencies.append(time.perf_counter() - sent)
            time.sleep(0.2)  # let the relay see the last frames
            return relay.up, relay.down, latencies

    (up_short, down_short, _), (up_long, down_long, latencies) = one_stream(short), one_stream(long)
    count = (long - short) * len(messages)
    return {"client_to_server": (up_long - up_short) / count, "server_to_client": (down_long - down_short) / count,
            "unloaded_latency_ms_p50": float(np.percentile(latencies, 50) * 1e3)}


# --- main --------------------------------------------------------------------------------------


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=32, help="concurrent client streams")
    p.add_argument("--requests", type=int, default=1000, help="messages sent in all")
    p.add_argument("--malformed", type=float, default=0.05, help="fraction of messages replaced by broken ones")
    p.add_argument("--window", type=int, default=2, help="messages in flight per stream")
    p.add_argument("--model", default="resnet50", choices=("resnet50", "deeplabv3_resnet50"))
    p.add_argument("--weights", default=None, help="the network's state dict (default: random weights)")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--split", default="layer3.4")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--bank", default=None, help="a saved RateBank (default: random units, see --units)")
    p.add_argument("--units", type=lambda s: [int(c) for c in s.split(",")], default=[16, 32],
                   help="C_r of the random units, comma-separated")
    p.add_argument("--q-step", type=float, default=0.5)
    p.add_argument("--pool", type=int, default=32, help="distinct images (messages) sent")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--max-message-bytes", type=int, default=1 << 16)
    p.add_argument("--decode-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads of this process's main thread: the in-process baselines decoding "
                        "one by one and with a pool (the third baseline uses every core)")
    p.add_argument("--tail-threads", type=int, default=os.cpu_count() or 1,
                   help="torch intra-op threads of the server's tail (default: one per core)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds any stream or wait may take")
    p.add_argument("--rounds", type=int, default=3,
                   help="load runs, each followed by the in-process runs; the figures are of the median round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the figures to this file")
    return p.parse_args(argv)


def load_run(running: Any, server: Any, streams: List[List[Tuple[int, str, int, bytes]]],
             args: argparse.Namespace) -> Dict[str, Any]:
    """One run of the clients (a child process) against the running server."""
    requests_before, batches_before, images_before = server.requests, server.batches, server.batched_images
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=client_process,
                            args=(running.address, streams, args.window, args.timeout, results))
    server_cpu_began = _cpu_seconds()
    child.start()
    elapsed, client_cpu, records = results.get(timeout=args.timeout + 60)
    server_cpu = _cpu_seconds() - server_cpu_began
    child.join(60)
    return {"seconds": elapsed, "client_cpu_seconds": client_cpu, "server_cpu_seconds": server_cpu,
            "records": records, "batches": server.batches - batches_before,
            "batched": server.batched_images - images_before, "server_saw": server.requests - requests_before}


def baselines(bank: Any, tail: Any, messages: Sequence[bytes], batch: int, count: int,
              args: argparse.Namespace) -> Dict[str, Tuple[float, float]]:
    """In-process decode + tail, three ways, each (images per second, per CPU-second).

    Each runs on a thread of its own that ends with it: libgomp all but stops
    spinning at barriers while the process has more OpenMP threads than
    cores, and a thread keeps its team until it ends, so a team left behind
    by one run (or by the server) would slow the next.
    """
    cores = os.cpu_count() or 1
    ways = {"one_decoder": (1, args.threads, None), "decode_pool": (args.decode_workers, 1, args.tail_threads),
            "all_torch_threads": (1, cores, None), "decode_many": (1, args.tail_threads, None, True)}
    return {name: _on_own_thread(in_process, bank, tail, messages, batch, count, *way) for name, way in ways.items()}


def _on_own_thread(function: Any, *args: Any) -> Any:
    result: List[Any] = []
    thread = threading.Thread(target=lambda: result.append(function(*args)))
    thread.start()
    thread.join()
    if not result:
        raise RuntimeError(f"{function.__name__} failed (its traceback is above)")
    return result[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    import torch

    from featcodec.serving import BackgroundServer, Limits, SplitServer

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    setup = build(args)
    bank, tail, messages = setup["bank"], setup["tail"], setup["messages"]
    print(f"built in {time.perf_counter() - began:.1f} s: {args.model} at {args.split}, features "
          f"{tuple(bank.feature_shape)}, {len(bank.units)} units, {len(messages)} messages", flush=True)
    streams = plan(args, messages)
    limits = Limits(max_message_bytes=args.max_message_bytes, max_in_flight=max(args.window, 1),
                    max_batch=args.max_batch, max_wait=args.max_wait_ms / 1000, decode_workers=args.decode_workers,
                    tail_threads=args.tail_threads)
    rounds: List[Dict[str, Any]] = []
    records: Dict[Tuple[int, int], Tuple[float, Any]] = {}
    largest = 0
    for number in range(args.rounds):
        # The server's load run and the in-process runs alternate, so a change in what else the
        # machine runs shows in one round's ratio rather than in all of them.  A fresh server each
        # round: a stopped server's threads (and OpenMP teams) are gone while the in-process runs run.
        server = SplitServer(bank, tail, limits, network=args.model, split=args.split)
        with BackgroundServer(server, "127.0.0.1:0", timeout=args.timeout) as running:
            if number == 0:
                wire = wire_bytes(running.port, messages)
            load = load_run(running, server, streams, args)
        largest = max(largest, server.largest_batch)
        records.update({(number, key): value for key, value in load.pop("records").items()})
        answered = judge(streams, {key: value for (n, key), value in records.items() if n == number},
                         setup["expected"])["valid_answered"]
        mean_batch = load["batched"] / max(load["batches"], 1)
        found = baselines(bank, tail, messages, max(1, round(mean_batch)), max(200, answered // 2), args)
        best = max(found.values(), key=lambda rates: rates[0])
        throughput = answered / load["seconds"]
        rounds.append({**load, "mean_batch": mean_batch, "throughput_images_per_s": throughput,
                       **{f"in_process_{name}_images_per_s": rates[0] for name, rates in found.items()},
                       **{f"in_process_{name}_images_per_cpu_s": rates[1] for name, rates in found.items()},
                       "in_process_images_per_s": best[0], "in_process_images_per_cpu_s": best[1],
                       "server_images_per_cpu_s": answered / max(load["server_cpu_seconds"], 1e-9),
                       "throughput_ratio": throughput / best[0]})
        print(f"round {number + 1}: {throughput:.1f} images/s, in-process fastest {best[0]:.1f}, "
              f"ratio {throughput / best[0]:.2f}", flush=True)
    figures = judge_rounds(streams, records, args.rounds, setup["expected"])
    middle = sorted(rounds, key=lambda r: r["throughput_ratio"])[len(rounds) // 2]
    request_sizes = [len(m) for m in messages]
    figures.update({
        "streams": args.streams, "window": args.window,
        "setting": f"{args.model} {args.split} {args.image_size}x{args.image_size}, units C_r "
        f"{args.units if not args.bank else args.bank}",
        "rounds": rounds,
        "throughput_ratios": [r["throughput_ratio"] for r in rounds],
        **{k: middle[k] for k in ("seconds", "throughput_images_per_s", "mean_batch", "server_saw",
                                  "in_process_images_per_s", "in_process_one_decoder_images_per_s",
                                  "in_process_decode_pool_images_per_s", "in_process_all_torch_threads_images_per_s",
                                  "in_process_decode_many_images_per_s",
                                  "throughput_ratio", "server_cpu_seconds", "client_cpu_seconds",
                                  "server_images_per_cpu_s", "in_process_images_per_cpu_s",
                                  "in_process_one_decoder_images_per_cpu_s")},
        "largest_batch": largest, "decode_workers": args.decode_workers,
        "server_cpu_share": middle["server_cpu_seconds"] / max(middle["server_cpu_seconds"]
                                                               + middle["client_cpu_seconds"], 1e-9),
        "bank_message_bytes": float(np.mean(request_sizes)),
        "request_bytes": float(np.mean([len(_request(i, m)) for i, m in enumerate(messages, 1)])),
        "grpc_message_bytes": float(np.mean([len(_request(i, m)) + 5 for i, m in enumerate(messages, 1)])),
        "wire_bytes_client_to_server": wire["client_to_server"],
        "wire_bytes_server_to_client": wire["server_to_client"],
        "unloaded_latency_ms_p50": wire["unloaded_latency_ms_p50"],
    })
    print_figures(figures)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)
    ok = (figures["wrong_answers"] == 0 and figures["lost"] == 0
          and figures["malformed_answered_with_error"] == figures["malformed"])
    return 0 if ok else 1


def judge_rounds(streams: List[List[Tuple[int, str, int, bytes]]], records: Dict[Tuple[int, int], Tuple[float, Any]],
                 rounds: int, expected: Sequence[Any]) -> Dict[str, Any]:
    """judge() over every round: each round sends the same requests, numbered apart here."""
    width = sum(len(items) for items in streams)
    renumbered = [[(n * width + number, kind, index, data) for number, kind, index, data in items]
                  for n in range(rounds) for items in streams]
    return judge(renumbered, {n * width + key: value for (n, key), value in records.items()}, expected)


def _request(request_id: int, message: bytes) -> bytes:
    from featcodec.serving import inference_pb2 as pb

    return pb.InferRequest(id=request_id, message=message).SerializeToString()


def print_figures(f: Dict[str, Any]) -> None:
    print(f"setting: {f['setting']}; {f['streams']} streams, {f['window']} in flight each")
    print(f"requests {f['requests']} (valid {f['valid']}, malformed {f['malformed']}), replies {f['replies']}, "
          f"lost {f['lost']}, errors {f['errors']}")
    print(f"wrong answers {f['wrong_answers']} (ties {f['ties']}) of {f['valid_answered']}; malformed answered "
          f"with an error {f['malformed_answered_with_error']} of {f['malformed']}")
    print(f"latency p50 {f['latency_ms_p50']:.2f} ms, p99 {f['latency_ms_p99']:.2f} ms; throughput "
          f"{f['throughput_images_per_s']:.1f} images/s over {f['seconds']:.1f} s; mean batch {f['mean_batch']:.2f} "
          f"(largest {f['largest_batch']})")
    print(f"one stream, one message in flight: latency p50 {f['unloaded_latency_ms_p50']:.2f} ms")
    print(f"in-process decode + tail at batch {max(1, round(f['mean_batch']))}: "
          f"{f['in_process_one_decoder_images_per_s']:.1f} images/s decoding one by one, "
          f"{f['in_process_decode_pool_images_per_s']:.1f} with {f['decode_workers']} decoding threads, "
          f"{f['in_process_all_torch_threads_images_per_s']:.1f} with torch on every core, "
          f"{f['in_process_decode_many_images_per_s']:.1f} with the server's decode_many; "
          f"server / the fastest = {f['throughput_ratio']:.2f} (target >= 0.80; rounds: "
          f"{', '.join(f'{r:.2f}' for r in f['throughput_ratios'])})")
    print(f"CPU over the run: server {f['server_cpu_seconds']:.1f} s, clients {f['client_cpu_seconds']:.1f} s "
          f"(server's share {100 * f['server_cpu_share']:.0f} %); images per CPU-second: server "
          f"{f['server_images_per_cpu_s']:.1f}, in-process fastest {f['in_process_images_per_cpu_s']:.1f} "
          f"(one decoder {f['in_process_one_decoder_images_per_cpu_s']:.1f})")
    print(f"bytes per message: bank {f['bank_message_bytes']:.1f}, InferRequest {f['request_bytes']:.1f}, gRPC "
          f"message {f['grpc_message_bytes']:.1f}; on the socket in a long stream {f['wire_bytes_client_to_server']:.1f} "
          f"up, {f['wire_bytes_server_to_client']:.1f} down (HTTP/2 framing included)")


if __name__ == "__main__":
    sys.exit(main())
