"""Pretrained networks and datasets from local paths only: nothing is downloaded.

Networks are built with ``weights=None`` and get their state dict from a
file you give; datasets are read from folders you give.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

PathLike = Union[str, "os.PathLike[str]"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The 20 Pascal VOC classes in COCO category ids, in VOC order (0 is background):
# the label set torchvision's DeepLabv3 COCO weights predict.
COCO_TO_VOC_CATEGORIES = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)


def load_weights(model: nn.Module, path: Optional[PathLike], strict: bool = True) -> nn.Module:
    """Loads a state dict saved with ``torch.save`` into ``model`` (no pickled code is run)."""
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        model.load_state_dict(state, strict=strict)
    return model


def resnet50(weights: Optional[PathLike] = None, num_classes: int = 1000) -> nn.Module:
    """torchvision ResNet-50, random or from a local state dict, in eval mode."""
    import torchvision

    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    return load_weights(model, weights).eval()


def deeplabv3_resnet50(weights: Optional[PathLike] = None, num_classes: int = 21,
                       aux_loss: bool = False) -> nn.Module:
    """torchvision DeepLabv3-ResNet50, random or from a local state dict, in eval mode.

    Checkpoints trained with the auxiliary head hold ``aux_classifier.*``
    keys; they are dropped unless ``aux_loss``.
    """
    import torchvision

    model = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_loss)
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if not aux_loss:
            state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
        model.load_state_dict(state)
    return model.eval()


def imagenet_transform(size: int = 224, resize: int = 256) -> Callable:
    """The usual evaluation transform: resize, centre crop, normalize."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(size), transforms.ToTensor(),
                               transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def image_folder(root: PathLike, transform: Optional[Callable] = None) -> torch.utils.data.Dataset:
    """An ImageNet-style folder (one subfolder per class) as a dataset of (image, label)."""
    from torchvision.datasets import ImageFolder

    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}")
    return ImageFolder(str(root), transform=transform if transform is not None else imagenet_transform())


class CocoSegmentation(torch.utils.data.Dataset):
    """COCO instances as semantic segmentation with the 21 VOC labels (255: ignore).

    ``root`` holds the images; ``annotations`` is an ``instances_*.json``.
    Polygons are rasterized with PIL and uncompressed RLE masks decoded here,
    so pycocotools is not needed; compressed (string) RLE, which COCO uses
    only for crowd regions, is marked 255 over its bounding box.  Where
    objects overlap, the later annotation wins.  ``transform(image, mask)``
    returns the pair to yield (default: normalized tensor, long tensor).
    """

    def __init__(self, root: PathLike, annotations: PathLike,
                 categories: Tuple[int, ...] = COCO_TO_VOC_CATEGORIES,
                 transform: Optional[Callable[[Any, Any], Tuple[torch.Tensor, torch.Tensor]]] = None) -> None:
        self.root = pathlib.Path(root)
        with open(annotations, encoding="utf-8") as f:
            coco = json.load(f)
        self.label_of = {cat: label for label, cat in enumerate(categories) if cat}
        self.images = sorted(coco["images"], key=lambda im: im["id"])
        self.annotations: Dict[int, List[dict]] = {im["id"]: [] for im in self.images}
        for ann in coco["annotations"]:
            if ann["category_id"] in self.label_of and ann["image_id"] in self.annotations:
                self.annotations[ann["image_id"]].append(ann)
        self.transform = transform if transform is not None else _default_pair_transform

    def __len__(self) -> int:
        return len(self.images)

    def mask(self, index: int) -> "Any":
        """The label mask of image ``index`` as a PIL image (mode "L")."""
        from PIL import Image, ImageDraw

        info = self.images[index]
        mask = Image.new("L", (info["width"], info["height"]), 0)
        draw = ImageDraw.Draw(mask)
        for ann in self.annotations[info["id"]]:
            label = 255 if ann.get("iscrowd") else self.label_of[ann["category_id"]]
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list):
                for polygon in segmentation:
                    if len(polygon) >= 6:
                        draw.polygon([(polygon[i], polygon[i + 1]) for i in range(0, len(polygon), 2)], fill=label)
            elif isinstance(segmentation.get("counts"), list):
                _paint_rle(mask, segmentation, label)
            else:
                x, y, w, h = ann["bbox"]
                draw.rectangle([x, y, x + w, y + h], fill=255)
        return mask

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        image = Image.open(self.root / self.images[index]["file_name"]).convert("RGB")
        return self.transform(image, self.mask(index))


def _paint_rle(mask: Any, rle: dict, label: int) -> None:
    """Paints an uncompressed COCO RLE (column-major run lengths, starting with zeros)."""
    import numpy as np
    from PIL import Image

    height, width = rle["size"]
    flat = np.zeros(height * width, dtype=bool)
    position, value = 0, False
    for run in rle["counts"]:
        flat[position:position + run] = value
        position, value = position + run, not value
    region = flat.reshape(width, height).T
    pixels = np.array(mask)
    pixels[region] = label
    mask.paste(Image.fromarray(pixels))


def _default_pair_transform(image: Any, mask: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    import numpy as np
    from torchvision.transforms import functional as TF

    tensor = TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)
    return tensor, torch.from_numpy(np.array(mask, dtype=np.int64))
