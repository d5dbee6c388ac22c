"""Training inputs: random tissue crops at the model's µm/px, and the published augmentations.

Crops are read region by region with the engine's own ``read_model_pixels`` (same pyramid
level choice, same antialiased resampling, same white point) and normalised by the
engine's ``to_model_input``, so the network is trained on exactly the pixels it will see
in the app. A mosaic is never loaded whole.

Reproducibility: every sample's crop position and augmentation come from its own seed,
derived from (run seed, epoch, position in the epoch). A crop is therefore the same
whatever process, worker or GPU reads it, which is what lets a resumed run and a
``torchrun`` run repeat a single-process run.

Augmentations (Wodzinski et al. 2019): random cropping, affine transform (rotation, scale,
shear; torchvision ``RandomAffine``), linear brightness and contrast changes, random
horizontal and vertical flips. Rotations go all the way round: an en-face RCM image has no
up. A crop is read larger than the tile and cut to the tile after the affine transform, so
rotated corners are tissue rather than black.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from torch.utils.data import Dataset, DistributedSampler, Sampler
from torchvision.transforms import InterpolationMode, v2

from rcm_viewer.inference.engine import ModelGeometry, read_model_pixels
from rcm_viewer.inference.tissue import TissueMask, low_resolution, tissue_mask, white_point
from rcm_viewer.mosaic import Mosaic, open_mosaic
from rcm_viewer.training.data import MosaicRecord

#: Affine ranges; the read margin below keeps rotated, shrunk, sheared corners in tissue.
ROTATION_DEGREES = 180.0
SCALE_RANGE = (0.9, 1.1)
SHEAR_DEGREES = 5.0
#: Crop side read per tile side: sqrt(2) / min scale plus the shear, rounded up.
READ_MARGIN = 1.7
BRIGHTNESS_RANGE = (-0.1, 0.1)
CONTRAST_RANGE = (0.8, 1.25)
#: Whole-mosaic baseline: the mosaic is resized to this many tile sides, then cropped.
WHOLE_MOSAIC_MARGIN = 1.15
#: Mosaics kept open per worker (each with its tissue mask): bounded memory.
OPEN_MOSAICS = 48
MOSAIC_CACHE_BYTES = 4 << 20


@dataclass(frozen=True)
class CropSettings:
    """What the crops look like; the same numbers go into the manifest."""

    tile_px: int
    pixel_size_um: float
    intensity_scaling: str = "robust_white"
    min_tissue_fraction: float = 0.5
    whole_mosaic: bool = False
    augment: bool = True


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


def epoch_plan(
    n_mosaics: int, crops_per_mosaic: int, seed: int, epoch: int, global_batch: int
) -> np.ndarray:
    """Mosaic index of every sample of an epoch, shuffled, cut to whole global batches."""
    plan = np.repeat(np.arange(n_mosaics), crops_per_mosaic)
    plan = plan[np.random.default_rng([seed, epoch, 7]).permutation(len(plan))]
    usable = (len(plan) // global_batch) * global_batch
    return plan[: max(usable, 0)]


@dataclass(frozen=True)
class _MosaicFacts:
    """What crops need to know about a mosaic; small (the tissue mask is ~8 µm/px).

    Kept for every mosaic for the whole run (a few kilobytes each), while the file handles
    themselves are opened and closed by a small LRU: a shuffled epoch touches every mosaic
    in turn, and recomputing the mask each time costs more than the crop.
    """

    geometry: ModelGeometry
    white: float
    mask: TissueMask | None
    tissue_pixels: np.ndarray


def _mosaic_facts(mosaic: Mosaic, record: MosaicRecord, settings: CropSettings) -> _MosaicFacts:
    um = record.pixel_size_um
    geometry = ModelGeometry.of(mosaic, um, settings.pixel_size_um)
    white = white_point(mosaic, settings.intensity_scaling)
    mask = None
    pixels = np.zeros((0, 2), dtype=np.int32)
    if not settings.whole_mosaic:
        mask = tissue_mask(mosaic, um, white_point(mosaic, "robust_white"))
        pixels = np.argwhere(mask.mask).astype(np.int32)
    return _MosaicFacts(geometry, white, mask, pixels)


class Augmenter:
    """The published augmentations on one gray crop (torch, deterministic per seed)."""

    def __init__(self, tile_px: int) -> None:
        self.tile_px = tile_px
        self.affine = v2.RandomAffine(
            degrees=ROTATION_DEGREES,
            scale=SCALE_RANGE,
            shear=SHEAR_DEGREES,
            interpolation=InterpolationMode.BILINEAR,
        )

    def __call__(self, pixels: np.ndarray, seed: int) -> torch.Tensor:
        rng = np.random.default_rng([seed, 1])
        image = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            image = self.affine(image)
        image = center_crop(image[0], self.tile_px)
        if rng.random() < 0.5:
            image = image.flip(1)
        if rng.random() < 0.5:
            image = image.flip(0)
        contrast = math.exp(rng.uniform(math.log(CONTRAST_RANGE[0]), math.log(CONTRAST_RANGE[1])))
        brightness = rng.uniform(*BRIGHTNESS_RANGE)
        return (image * contrast + brightness).clamp_(0.0, 1.0)


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top : top + size, left : left + size].contiguous()


def whole_mosaic_pixels(mosaic: Mosaic, white: float, side: int) -> np.ndarray:
    """The whole mosaic, padded to a square with black and resized to ``side`` pixels.

    The published baseline: one image per mosaic. Read from the smallest pyramid level
    that is still sharp enough, never at full resolution.
    """
    info = mosaic.info
    longest = max(info.width, info.height)
    image, _, _ = low_resolution(mosaic, max(1.0, longest / (side * 2)))
    image = np.clip(image / white, 0.0, 1.0)
    h, w = image.shape
    square = np.zeros((max(h, w), max(h, w)), dtype=np.float32)
    square[(max(h, w) - h) // 2 :][:h, (max(h, w) - w) // 2 :][:, :w] = image
    tensor = torch.from_numpy(square)[None, None]
    return F.interpolate(
        tensor, size=(side, side), mode="bilinear", align_corners=False, antialias=True
    )[0, 0].numpy()


class CropDataset(Dataset):
    """Training samples addressed by ``(epoch, position)``: a crop and its class index.

    The plan of an epoch (which mosaic each position reads) is recomputed from the seed in
    each worker, so persistent workers need no message from the main process.
    """

    def __init__(
        self,
        records: Sequence[MosaicRecord],
        data_dir: Path,
        class_ids: Sequence[str],
        settings: CropSettings,
        *,
        crops_per_mosaic: int,
        seed: int,
        global_batch: int,
    ) -> None:
        self.records = list(records)
        self.data_dir = Path(data_dir)
        self.labels = [list(class_ids).index(r.class_id) for r in self.records]
        self.settings = settings
        self.crops_per_mosaic = crops_per_mosaic
        self.seed = seed
        self.global_batch = global_batch
        self.augmenter = Augmenter(settings.tile_px)
        self._open: OrderedDict[int, Mosaic] = OrderedDict()
        self._facts: dict[int, _MosaicFacts] = {}
        self._plans: dict[int, np.ndarray] = {}

    def plan(self, epoch: int) -> np.ndarray:
        if epoch not in self._plans:
            self._plans = {
                epoch: epoch_plan(
                    len(self.records), self.crops_per_mosaic, self.seed, epoch, self.global_batch
                )
            }
        return self._plans[epoch]

    def epoch_length(self, epoch: int = 0) -> int:
        return len(self.plan(epoch))

    def __len__(self) -> int:
        return self.epoch_length(0)

    def _mosaic(self, index: int) -> Mosaic:
        mosaic = self._open.get(index)
        if mosaic is None:
            mosaic = open_mosaic(
                self.records[index].absolute(self.data_dir), cache_bytes=MOSAIC_CACHE_BYTES
            )
            self._open[index] = mosaic
            while len(self._open) > OPEN_MOSAICS:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(index)
        return mosaic

    def facts(self, index: int) -> _MosaicFacts:
        facts = self._facts.get(index)
        if facts is None:
            facts = _mosaic_facts(self._mosaic(index), self.records[index], self.settings)
            self._facts[index] = facts
        return facts

    def prepare(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Compute every mosaic's facts once, before data-loading workers are forked."""
        for index in range(len(self.records)):
            self.facts(index)
            if progress is not None:
                progress(index + 1, len(self.records))
        for mosaic in self._open.values():
            mosaic.close()
        self._open.clear()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()  # file handles stay in the process that opened them
        return state

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, position = key
        index = int(self.plan(epoch)[position])
        seed = sample_seed(self.seed, epoch, position)
        mosaic = self._mosaic(index)
        facts = self.facts(index)
        if self.settings.whole_mosaic:
            side = math.ceil(self.settings.tile_px * WHOLE_MOSAIC_MARGIN)
            pixels = whole_mosaic_pixels(mosaic, facts.white, side)
            pixels = random_crop(pixels, self.settings.tile_px, seed)
            read = math.ceil(self.settings.tile_px * READ_MARGIN)
            pad = (read - self.settings.tile_px) // 2
            pixels = np.pad(pixels, pad)  # black around, as the mosaic's own margin
        else:
            pixels = self.read_crop(mosaic, facts, seed)
        if self.settings.augment:
            image = self.augmenter(pixels, seed)
        else:
            image = center_crop(torch.from_numpy(pixels), self.settings.tile_px)
        return image, self.labels[index]

    def read_crop(self, mosaic: Mosaic, facts: _MosaicFacts, seed: int) -> np.ndarray:
        """A ``READ_MARGIN`` x tile square of model pixels centred on tissue."""
        s = self.settings
        g = facts.geometry
        rng = np.random.default_rng([seed, 2])
        read = math.ceil(s.tile_px * READ_MARGIN)
        half_tile_level0 = s.tile_px * g.factor / 2
        cx = cy = 0.0
        for _ in range(20):
            if facts.mask is not None and len(facts.tissue_pixels):
                row, column = facts.tissue_pixels[rng.integers(len(facts.tissue_pixels))]
                d = facts.mask.downsample
                cx, cy = (column + rng.random()) * d, (row + rng.random()) * d
                fraction = facts.mask.fraction(
                    cx - half_tile_level0,
                    cy - half_tile_level0,
                    cx + half_tile_level0,
                    cy + half_tile_level0,
                )
                if fraction >= s.min_tissue_fraction:
                    break
            else:
                cx = rng.random() * mosaic.info.width
                cy = rng.random() * mosaic.info.height
                break
        x = round(cx / g.factor - read / 2)
        y = round(cy / g.factor - read / 2)
        pixels, _ = read_model_pixels(
            mosaic, g.level, g.level_per_model, x, y, read, read, facts.white
        )
        return pixels


def random_crop(pixels: np.ndarray, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 3])
    h, w = pixels.shape
    top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    return pixels[top : top + size, left : left + size]


class EpochSampler(Sampler):
    """Yields ``(epoch, position)`` keys of this process's share of the current epoch.

    The share is a ``DistributedSampler`` (no shuffling: the plan is already shuffled) over
    the epoch's positions, so rank r of W takes positions r, r + W, r + 2W...; a local
    batch of B / W positions is then exactly one rank's slice of a global batch of B.
    """

    def __init__(self, dataset: CropDataset, world_size: int = 1, rank: int = 0) -> None:
        self.dataset, self.world_size, self.rank = dataset, world_size, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def positions(self) -> list[int]:
        n = self.dataset.epoch_length(self.epoch)
        if self.world_size == 1:
            return list(range(n))
        share = DistributedSampler(
            range(n), num_replicas=self.world_size, rank=self.rank, shuffle=False, drop_last=True
        )
        return list(share)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, p) for p in self.positions()])

    def __len__(self) -> int:
        return len(self.positions())


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([b[0] for b in batch])
    labels = torch.tensor([b[1] for b in batch], dtype=torch.long)
    return images, labels
