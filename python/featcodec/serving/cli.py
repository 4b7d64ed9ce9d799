"""``featcodec serve BANK --model resnet50 --weights PATH --split layer4.2 --port 50051``."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Optional, Sequence

from .tail import NETWORKS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="featcodec serve", description=(
        "Serve split inference: decode rate-bank messages, run the network's tail, answer each message "
        "(top-k classes or a label map). Everything is read from local files."))
    p.add_argument("bank", help="the rate bank file (RateBank.save)")
    p.add_argument("--model", required=True, choices=NETWORKS, help="the network")
    weights = p.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", help="the network's state dict (torch.save), read without unpickling code")
    weights.add_argument("--random-weights", action="store_true", help="random weights (for trying things out)")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the network's head (default: 1000 "
                   "for resnet50, 21 for deeplabv3_resnet50)")
    p.add_argument("--split", required=True, help="the cut, a module name (e.g. layer4.2, backbone.layer4.1)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="the input images' size, for tails that need it (DeepLabv3 backbone cuts)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1; 0.0.0.0 or [::] for all)")
    p.add_argument("--port", type=int, default=50051, help="port (0: any free one, printed at start)")
    p.add_argument("--top-k", type=int, default=5, help="classes per image in a classification answer")
    p.add_argument("--max-batch", type=int, default=32, help="images per tail call and per message")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a batch waits for more messages")
    p.add_argument("--max-message-bytes", type=int, default=1 << 20, help="largest message decoded")
    p.add_argument("--max-in-flight", type=int, default=64, help="messages answered at once per stream")
    p.add_argument("--max-streams", type=int, default=1024, help="streams open at once")
    p.add_argument("--tail-threads", type=int, default=os.cpu_count() or 1,
                   help="torch intra-op threads of the tail's calls (default: one per core)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the main thread, which "
                   "loads the network and checks the tail (default 1: a team of its own would leave more OpenMP "
                   "threads than cores, and the tail's would stop spinning at barriers)")
    p.add_argument("--stop-after", type=float, default=None, help="stop after this many seconds")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import torch

    from ..bank import RateBank
    from ..split import split
    from .server import Limits, SplitServer, serve_forever
    from .tail import Tail, load_network

    torch.set_num_threads(args.threads)
    bank = RateBank.load(args.bank)
    bank_split = getattr(bank, "split", None)
    if bank_split and bank_split != args.split:
        raise SystemExit(f"featcodec serve: the bank is for split {bank_split!r}, not {args.split!r}")
    network = load_network(args.model, None if args.random_weights else args.weights, args.num_classes)
    _, tail_module = split(network, args.split)
    tail = Tail(tail_module, bank.feature_shape, image_size=args.image_size, top_k=args.top_k)
    limits = Limits(max_message_bytes=args.max_message_bytes, max_in_flight=args.max_in_flight,
                    max_batch=args.max_batch, max_wait=args.max_wait_ms / 1000, max_streams=args.max_streams,
                    tail_threads=args.tail_threads)
    server = SplitServer(bank, tail, limits, network=args.model, split=args.split,
                         fingerprint=str(getattr(bank, "fingerprint", "") or ""))
    serve_forever(server, f"{args.host}:{args.port}", stop_after=args.stop_after)
    return 0
