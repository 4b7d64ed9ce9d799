"""End-to-end latency per image: client compute, transfer over a link, server compute.

As in Matsubara et al., WACV 2022 (supplementary section 6), the transfer
time is the message's size divided by the link's data rate; the default
link is LoRa at 37.5 kbit/s.  ``client`` maps an image batch to the bytes
sent, ``server`` maps those bytes to the answer; both are timed with
``time.perf_counter`` on this machine, one image at a time.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List

import torch

LORA_KBPS = 37.5


@dataclass(frozen=True)
class ImageLatency:
    """One image: seconds on the client, bytes sent, seconds on the link and on the server."""

    client_s: float
    bytes: int
    transfer_s: float
    server_s: float

    @property
    def total_s(self) -> float:
        return self.client_s + self.transfer_s + self.server_s


@dataclass(frozen=True)
class LatencyReport:
    images: List[ImageLatency]
    link_kbps: float

    def median(self, field: str) -> float:
        return statistics.median(getattr(i, field) for i in self.images)

    def summary(self) -> dict:
        """Medians over the images (seconds and bytes)."""
        return {key: self.median(key) for key in ("client_s", "bytes", "transfer_s", "server_s", "total_s")}

    def format(self) -> str:
        s = self.summary()
        return (f"per image (median of {len(self.images)}), link {self.link_kbps:g} kbit/s: client "
                f"{s['client_s'] * 1e3:.2f} ms, {s['bytes']:.0f} bytes, transfer {s['transfer_s'] * 1e3:.1f} ms, "
                f"server {s['server_s'] * 1e3:.2f} ms, total {s['total_s'] * 1e3:.1f} ms")


def transfer_seconds(size_bytes: int, link_kbps: float = LORA_KBPS) -> float:
    """Seconds to send ``size_bytes`` at ``link_kbps`` kilobits (1000 bits) per second."""
    if not link_kbps > 0:
        raise ValueError(f"link_kbps must be positive, got {link_kbps}")
    return size_bytes * 8 / (link_kbps * 1000.0)


@torch.no_grad()
def latency_report(client: Callable[[torch.Tensor], bytes], server: Callable[[bytes], Any],
                   images: Iterable[torch.Tensor], link_kbps: float = LORA_KBPS, warmup: int = 1) -> LatencyReport:
    """Times ``client`` and ``server`` on each image (a (3, H, W) or (1, 3, H, W) tensor).

    The first ``warmup`` images are run once untimed first (allocations,
    lazy table loading).
    """
    batch = [image if image.dim() == 4 else image.unsqueeze(0) for image in images]
    if not batch:
        raise ValueError("latency_report needs at least one image")
    for image in batch[:warmup]:
        server(client(image))
    results = []
    for image in batch:
        start = time.perf_counter()
        data = client(image)
        middle = time.perf_counter()
        server(data)
        end = time.perf_counter()
        results.append(ImageLatency(middle - start, len(data), transfer_seconds(len(data), link_kbps), end - middle))
    return LatencyReport(results, float(link_kbps))


__all__ = ["ImageLatency", "LORA_KBPS", "LatencyReport", "latency_report", "transfer_seconds"]
