"""Helpers shared by the inference tests (a unique module name: pytest puts every test
folder on sys.path, so a generic name would collide with other rooms' helpers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import torch

from rcm_viewer.inference import ModelBundle, save_bundle
from rcm_viewer.inference.network import build_network
from rcm_viewer.synthetic import LESION_CLASSES, MosaicSpec, SyntheticMosaic

#: Seeds whose synthetic acquisition has no missing fields and no artefacts at 1024 px.
SEEDS = {"naevus": 7, "bcc": 8, "melanoma": 9}
SIDE = 1024
MOSAIC_UM = 1.0
MODEL_UM = 2.0
#: The bcc patch pasted into the naevus mosaic: bottom-right corner, level-0 pixels.
PATCH = (640, 640, 384, 384)  # x, y, w, h


def render_sources() -> dict[str, np.ndarray]:
    """One 1024 x 1024 uint8 synthetic mosaic per class at 1 µm/px (~1 s each)."""
    return {
        cls: SyntheticMosaic(MosaicSpec(cls, SIDE, SIDE, MOSAIC_UM, seed=SEEDS[cls])).to_array()
        for cls in LESION_CLASSES
    }


def composite(sources: dict[str, np.ndarray]) -> np.ndarray:
    """A naevus mosaic whose bottom-right corner (``PATCH``) is basal cell carcinoma."""
    out = sources["naevus"].copy()
    x, y, w, h = PATCH
    out[y : y + h, x : x + w] = sources["bcc"][y : y + h, x : x + w]
    return out


def write_tiff(
    path: Path, image: np.ndarray, pixel_size_um: float | None = MOSAIC_UM, *, pyramid: bool = False
) -> Path:
    """A tiled TIFF (with one 2x level when ``pyramid``); pixel size in the resolution tags."""
    kwargs: dict = {"tile": (256, 256), "photometric": "rgb" if image.ndim == 3 else "minisblack"}
    if pixel_size_um is not None:
        kwargs.update(
            resolution=(1e4 / pixel_size_um, 1e4 / pixel_size_um), resolutionunit="CENTIMETER"
        )
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, subifds=1 if pyramid else None, **kwargs)
        if pyramid:
            half = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2].astype(np.uint16)
            half = (
                half[0::2, 0::2] + half[1::2, 0::2] + half[0::2, 1::2] + half[1::2, 1::2] + 2
            ) // 4
            kwargs.pop("resolution", None)
            kwargs.pop("resolutionunit", None)
            tif.write(half.astype(image.dtype), subfiletype=1, **kwargs)
    return path


def bundle_fields(**overrides: object) -> dict:
    fields = {
        "name": "test-model",
        "version": "0.0.1",
        "architecture": "resnet18",
        "classes": LESION_CLASSES,
        "tile_px": 96,
        "pixel_size_um": MODEL_UM,
        "intensity_scaling": "full_scale",
        "training": {"synthetic": True, "data": "random weights: tests of the plumbing only"},
    }
    fields.update(overrides)
    return fields


def random_bundle(directory: Path, seed: int = 0, **overrides: object) -> ModelBundle:
    """A bundle with randomly initialised weights: for tests of the plumbing, never results."""
    torch.manual_seed(seed)
    fields = bundle_fields(**overrides)
    network = build_network(str(fields["architecture"]), len(fields["classes"]))  # type: ignore[arg-type]
    return save_bundle(network, fields, directory)


def _downsample2(image: np.ndarray) -> np.ndarray:
    a = image.astype(np.float32) / 255.0
    return (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4


def train_tiny_bundle(
    directory: Path, sources: dict[str, np.ndarray], steps: int = 100, tile_px: int = 64
) -> ModelBundle:
    """A ResNet-18 that tells the three synthetic sources apart from 64 px tiles at 2 µm/px.

    Trained on random crops of the very mosaics the composite is made of: the heatmap
    test checks geometry (does the hot area land where the bcc patch is?), not whether
    the model generalises. About 25-35 s on two CPU cores; 40 steps left the model too
    weak on some CPUs (the composite came out bcc).
    """
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = [_downsample2(sources[c]) for c in LESION_CLASSES]
    network = build_network("resnet18", len(LESION_CLASSES))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
    mean, std = 0.45, 0.225
    network.train()
    batch = 24
    for _ in range(steps):
        crops, labels = [], []
        for i in range(batch):
            label = i % len(images)
            image = images[label]
            for _attempt in range(10):
                y, x = rng.integers(0, image.shape[0] - tile_px, size=2)
                crop = image[y : y + tile_px, x : x + tile_px]
                if crop.mean() > 0.05:
                    break
            crop = np.rot90(crop, int(rng.integers(4)))
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            crops.append(np.ascontiguousarray(crop))
            labels.append(label)
        x = torch.from_numpy(np.stack(crops))[:, None].expand(-1, 3, -1, -1)
        loss = torch.nn.functional.cross_entropy(network((x - mean) / std), torch.tensor(labels))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    network.eval()
    fields = bundle_fields(
        name="tiny-test-model",
        tile_px=tile_px,
        mean=(mean,) * 3,
        std=(std,) * 3,
        training={
            "synthetic": True,
            "data": "three synthetic mosaics (tests only)",
            "counts_per_class": {c: 1 for c in LESION_CLASSES},
            "steps": steps,
        },
    )
    return save_bundle(network, fields, directory)
