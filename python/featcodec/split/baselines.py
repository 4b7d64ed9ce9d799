"""Image-codec baselines: the input image coded by JPEG, WebP or AVIF (Pillow), the network unchanged.

Each image is compressed at the network's input geometry (after the resize
and crop), decoded, normalized and classified; its bpp is the whole file's
bytes (headers and all) over the input's pixels, the same denominator as the
split runs' true bpp.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Sequence, Tuple

import torch
from torch import nn

from .train import evaluate

# Pillow's format names; AVIF and WebP are built into Pillow 13's wheels.
_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}


def encode_image(image: Any, codec: str, quality: int) -> bytes:
    """The file ``codec`` (``"jpeg"``, ``"webp"`` or ``"avif"``) makes of a PIL image at ``quality``."""
    if codec not in _FORMATS:
        raise ValueError(f"unknown image codec {codec!r}; known: {sorted(_FORMATS)}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 100:
        raise ValueError(f"quality must be an integer in [0, 100], got {quality!r}")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=_FORMATS[codec], quality=quality)
    return buffer.getvalue()


def decode_image(data: bytes) -> Any:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


@dataclass
class BaselinePoint:
    codec: str
    quality: int
    metric: float
    bpp: float


class _Coded(torch.utils.data.Dataset):
    """The images of ``images`` through one codec at one quality; counts their bytes."""

    def __init__(self, images: Any, to_input: Callable[[Any], torch.Tensor], codec: str, quality: int) -> None:
        self.images, self.to_input, self.codec, self.quality = images, to_input, codec, quality
        self.bytes = 0
        self.pixels = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Any]:
        image, target = self.images[index]
        data = encode_image(image, self.codec, self.quality)
        self.bytes += len(data)
        self.pixels += image.width * image.height
        return self.to_input(decode_image(data)), target


def sweep(network: nn.Module, images: Any, to_input: Callable[[Any], torch.Tensor], codecs: Iterable[str],
          qualities: Sequence[int], metric: str, num_classes: int, batch_size: int = 32,
          device: Any = "cpu") -> List[BaselinePoint]:
    """Metric and bpp of ``network`` on ``images`` (a dataset of (PIL image, target)) per codec and quality.

    ``to_input(pil)`` is the network's normalization; ``metric`` the key of
    :func:`featcodec.split.train.evaluate`'s result ("accuracy" or "miou").
    """
    points = []
    for codec in codecs:
        for quality in qualities:
            coded = _Coded(images, to_input, codec, int(quality))
            loader = torch.utils.data.DataLoader(coded, batch_size=batch_size, num_workers=0)
            result: Dict[str, float] = evaluate(network, loader, num_classes=num_classes, device=device)
            points.append(BaselinePoint(codec, int(quality), result[metric], 8 * coded.bytes / coded.pixels))
    return points


__all__ = ["BaselinePoint", "decode_image", "encode_image", "sweep"]
