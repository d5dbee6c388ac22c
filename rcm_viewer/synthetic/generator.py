"""Synthetic RCM-like mosaics: specification, tile-by-tile rendering, TIFF writing.

A mosaic is rendered in two stages:

1. morphology (morphology.py): the lesion's reflectance, class-specific;
2. acquisition (here), class-independent: intensities are remapped so that the
   whole-image histogram follows a distribution drawn per mosaic (so global
   statistics say nothing about the class), then stitched 500 µm fields with
   their own gain, vignetting and seams, speckle and read noise, artefacts
   (air bubbles with saturated rims, dark folds, saturated patches) and a
   black unscanned margin where the mosaic is not rectangular.

Every random choice is a pure function of the seed and absolute coordinates,
so any region renders identically whatever the tiling, and a 16,000 px mosaic
is written band by band into a tiled, pyramidal TIFF in bounded memory.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from rcm_viewer.errors import SyntheticError
from rcm_viewer.synthetic.morphology import LESION_CLASSES, draw_params, render_tissue
from rcm_viewer.synthetic.noise import hash_normal, hash_uniform

GENERATOR_VERSION = 1
RENDER_CHUNK = 512
MIN_SIDE, MAX_SIDE = 64, 200_000
_L_FIELD, _L_SPECKLE, _L_READ, _L_DITHER = 101, 102, 103, 104


@dataclass(frozen=True)
class MosaicSpec:
    """Everything that determines a synthetic mosaic, byte for byte."""

    lesion_class: str
    width: int
    height: int
    pixel_size_um: float = 0.75
    seed: int = 0
    bits: int = 8
    field_um: float = 500.0

    def validate(self) -> None:
        if self.lesion_class not in LESION_CLASSES:
            raise SyntheticError(
                f"unknown lesion class {self.lesion_class!r}: "
                f"use one of {', '.join(LESION_CLASSES)}"
            )
        for name, side in (("width", self.width), ("height", self.height)):
            if not MIN_SIDE <= side <= MAX_SIDE:
                raise SyntheticError(f"{name} {side} px is outside {MIN_SIDE}-{MAX_SIDE} px")
        if not 0.2 <= self.pixel_size_um <= 2.0:
            raise SyntheticError(
                f"pixel size {self.pixel_size_um} µm is outside 0.2-2.0 µm (RCM is 0.5-1.0 µm/px)"
            )
        if self.bits not in (8, 16):
            raise SyntheticError(f"bits must be 8 or 16, not {self.bits}")
        if self.seed < 0:
            raise SyntheticError("seed must be >= 0")


@dataclass(frozen=True)
class Artefact:
    kind: str  # "bubble", "fold" or "glare"
    x_um: float
    y_um: float
    size_um: float
    angle: float = 0.0


@dataclass(frozen=True)
class Acquisition:
    """Class-independent imaging conditions for one mosaic."""

    target_a: float
    target_b: float
    black_level: float
    white_level: float
    field_gain_sd: float
    vignetting: float
    seam: float
    speckle: float
    read_noise: float
    missing_fields: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    artefacts: tuple[Artefact, ...] = ()


def _draw_acquisition(spec: MosaicSpec) -> Acquisition:
    # Seeded without the class, so a same-seed melanoma and naevus share the camera.
    rng = np.random.default_rng([spec.seed, 7919])
    u = rng.uniform
    width_um = spec.width * spec.pixel_size_um
    height_um = spec.height * spec.pixel_size_um
    nfx = math.ceil(width_um / spec.field_um)
    nfy = math.ceil(height_um / spec.field_um)
    missing: set[tuple[int, int]] = set()
    if nfx >= 3 and nfy >= 3 and rng.random() < 0.7:
        corners = rng.choice(4, size=int(rng.integers(1, 3)), replace=False)
        depth = int(rng.integers(1, max(2, min(nfx, nfy) // 3 + 1)))
        for corner in corners:
            for i in range(depth):
                for j in range(depth - i):
                    fx = i if corner in (0, 2) else nfx - 1 - i
                    fy = j if corner in (0, 1) else nfy - 1 - j
                    missing.add((fx, fy))
    area_mm2 = width_um * height_um / 1e6
    artefacts: list[Artefact] = []
    for kind, rate, size in (
        ("bubble", 0.06, (60.0, 220.0)),
        ("fold", 0.04, (150.0, 500.0)),
        ("glare", 0.25, (12.0, 45.0)),
    ):
        for _ in range(min(int(rng.poisson(rate * area_mm2 + (0.3 if kind == "glare" else 0))), 6)):
            artefacts.append(
                Artefact(
                    kind,
                    float(u(0, width_um)),
                    float(u(0, height_um)),
                    float(u(*size)),
                    float(u(0, 2 * np.pi)),
                )
            )
    return Acquisition(
        target_a=float(u(1.3, 2.6)),
        target_b=float(u(2.0, 5.5)),
        black_level=float(u(0.0, 0.05)),
        white_level=float(u(0.6, 1.0)),
        field_gain_sd=float(u(0.04, 0.18)),
        vignetting=float(u(0.1, 0.45)),
        seam=float(u(0.0, 0.15)),
        speckle=float(u(0.08, 0.3)),
        read_noise=float(u(0.005, 0.03)),
        missing_fields=frozenset(missing),
        artefacts=tuple(artefacts),
    )


class SyntheticMosaic:
    """A lazily rendered synthetic mosaic: ask for any region, in any order."""

    def __init__(self, spec: MosaicSpec) -> None:
        spec.validate()
        self.spec = spec
        class_index = LESION_CLASSES.index(spec.lesion_class)
        self.params = draw_params(
            spec.lesion_class, np.random.default_rng([spec.seed, class_index, 104729])
        )
        self.acquisition = _draw_acquisition(spec)
        self._morph_seed = int(
            np.random.SeedSequence([spec.seed, class_index]).generate_state(1)[0]
        )
        self._map: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.spec.bits == 8 else np.uint16)

    # -- intensity remapping ---------------------------------------------------------

    def _intensity_map(self) -> tuple[np.ndarray, np.ndarray]:
        """Monotone map from raw reflectance to a per-mosaic target distribution.

        Quantiles come from the tissue sampled on a regular grid over the whole
        mosaic (every k-th pixel, ~250,000 points): the noise fields are
        functions of µm coordinates, so rendering at k times the pixel size
        gives exactly those pixels, at the cost of one tile. The map is the
        same whatever region is rendered first (needed for tile-by-tile output).
        """
        if self._map is None:
            spec = self.spec
            stride = max(1, math.ceil(math.sqrt(spec.width * spec.height / 262_144)))
            shape = (math.ceil(spec.height / stride), math.ceil(spec.width / stride))
            sample = self._tissue(0, 0, shape[1], shape[0], stride).ravel()
            levels = np.linspace(0.0, 1.0, 4097)
            source = np.quantile(sample, levels).astype(np.float64)
            source = source + np.arange(source.size) * 1e-9  # strictly increasing for interp
            acq = self.acquisition
            # Kumaraswamy quantile function: a beta-like, skewed-dark distribution.
            q = (1.0 - (1.0 - levels) ** (1.0 / acq.target_b)) ** (1.0 / acq.target_a)
            target = acq.black_level + (acq.white_level - acq.black_level) * q
            self._map = (source, target)
        return self._map

    def _tissue(self, x: int, y: int, w: int, h: int, stride: int = 1) -> np.ndarray:
        """Raw reflectance, with a tiny tie-breaking dither.

        Flat areas (clefts, clipped highlights) give many equal values that a
        quantile map would turn into histogram spikes with a class-specific
        position; a dither far below one grey level spreads them out.
        """
        p = self.spec.pixel_size_um
        tissue = render_tissue(
            self.spec.lesion_class, self.params, self._morph_seed, x * p, y * p, (h, w), p * stride
        )
        xs = (x + np.arange(w) * stride)[None, :]
        ys = (y + np.arange(h) * stride)[:, None]
        return tissue + (2e-3 * hash_uniform(self.spec.seed, _L_DITHER, xs, ys)).astype(np.float32)

    # -- rendering -------------------------------------------------------------------

    def render_float(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Region (x, y, w, h) in pixels as float32 in [0, 1], acquisition included."""
        spec, acq = self.spec, self.acquisition
        p = spec.pixel_size_um
        source, target = self._intensity_map()
        img = np.interp(self._tissue(x, y, w, h), source, target).astype(np.float32)
        xs = (x + np.arange(w))[None, :]
        ys = (y + np.arange(h))[:, None]
        x_um = xs * p
        y_um = ys * p
        img = self._artefacts(img, x_um, y_um)
        field_x = np.floor(x_um / spec.field_um).astype(np.int64)
        field_y = np.floor(y_um / spec.field_um).astype(np.int64)
        gain = 1.0 + 2.0 * acq.field_gain_sd * (
            hash_uniform(spec.seed, _L_FIELD, field_x, field_y) - 0.5
        ).astype(np.float32)
        lx = (x_um / spec.field_um - field_x - 0.5).astype(np.float32)
        ly = (y_um / spec.field_um - field_y - 0.5).astype(np.float32)
        vignette = 1.0 - acq.vignetting * 2.0 * (lx * lx + ly * ly)
        border_px = np.minimum(
            np.minimum(np.abs(lx + 0.5), np.abs(0.5 - lx)) * spec.field_um / p,
            np.minimum(np.abs(ly + 0.5), np.abs(0.5 - ly)) * spec.field_um / p,
        )
        seam = 1.0 - acq.seam * (border_px < 1.5)
        img = img * gain * vignette * seam
        img = img * np.maximum(1.0 + acq.speckle * hash_normal(spec.seed, _L_SPECKLE, xs, ys), 0)
        img = img + acq.read_noise * hash_normal(spec.seed, _L_READ, xs, ys)
        if acq.missing_fields:
            missing = np.zeros((h, w), dtype=bool)
            for fx, fy in acq.missing_fields:
                missing |= (field_x == fx) & (field_y == fy)
            img[missing] = 0.0
        return np.clip(img, 0.0, 1.0)

    def _artefacts(self, img: np.ndarray, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
        x0, x1 = float(x_um.min()), float(x_um.max())
        y0, y1 = float(y_um.min()), float(y_um.max())
        for art in self.acquisition.artefacts:
            reach = art.size_um * 1.2
            if art.x_um + reach < x0 or art.x_um - reach > x1:
                continue
            if art.y_um + reach < y0 or art.y_um - reach > y1:
                continue
            dx = (x_um - art.x_um).astype(np.float32)
            dy = (y_um - art.y_um).astype(np.float32)
            if art.kind == "bubble":
                dist = np.sqrt(dx * dx + dy * dy)
                rim_um = max(3.0, art.size_um * 0.05)
                inside = dist < art.size_um
                img = np.where(inside, 0.03 + 0.1 * img, img)
                ring = np.exp(-(((dist - art.size_um) / rim_um) ** 2))
                img = np.maximum(img, ring)
            elif art.kind == "fold":
                c, s = math.cos(art.angle), math.sin(art.angle)
                along = dx * c + dy * s
                across = np.abs(-dx * s + dy * c)
                t = np.clip(along / art.size_um, 0.0, 1.0)
                half = 0.12 * art.size_um * (1.0 - t)  # wedge: wide at the base, closed at apex
                within = (along >= 0) & (along <= art.size_um) & (across < half)
                img = np.where(within, 0.04 + 0.15 * img, img)
                edge = (along >= 0) & (along <= art.size_um) & (np.abs(across - half) < 2.5)
                img = np.where(edge, 1.0, img)
            else:  # glare: a saturated patch
                dist = np.sqrt(dx * dx + dy * dy)
                img = np.maximum(img, np.exp(-((dist / art.size_um) ** 4)))
        return img.astype(np.float32)

    def render(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Region in the output dtype (uint8 or uint16)."""
        scale = 255.0 if self.spec.bits == 8 else 65535.0
        return np.round(self.render_float(x, y, w, h) * scale).astype(self.dtype)

    def to_array(self) -> np.ndarray:
        """The whole mosaic in memory (for small mosaics: tests, demos)."""
        spec = self.spec
        out = np.empty((spec.height, spec.width), dtype=self.dtype)
        for y in range(0, spec.height, RENDER_CHUNK):
            for x in range(0, spec.width, RENDER_CHUNK):
                h = min(RENDER_CHUNK, spec.height - y)
                w = min(RENDER_CHUNK, spec.width - x)
                out[y : y + h, x : x + w] = self.render(x, y, w, h)
        return out

    def metadata(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "rcm_viewer_synthetic": GENERATOR_VERSION,
            "synthetic": True,
            "lesion_class": spec.lesion_class,
            "pixel_size_um": spec.pixel_size_um,
            "seed": spec.seed,
            "bits": spec.bits,
            "field_um": spec.field_um,
            "note": "Procedurally generated RCM-like image. Not patient data. Not for diagnosis.",
        }


# ------------------------------------------------------------------------------ writing


def _pyramid_shapes(height: int, width: int, min_side: int = 1024) -> list[tuple[int, int]]:
    shapes = []
    h, w = height, width
    while max(h, w) > min_side:
        h, w = (h + 1) // 2, (w + 1) // 2
        shapes.append((h, w))
    return shapes


def _halve(band: np.ndarray) -> np.ndarray:
    """2x2 mean with edge replication for odd sizes (keeps the level's ceil shape)."""
    h, w = band.shape
    if h % 2 or w % 2:
        band = np.pad(band, ((0, h % 2), (0, w % 2)), mode="edge")
    acc = band.astype(np.uint32)
    total = acc[0::2, 0::2] + acc[1::2, 0::2] + acc[0::2, 1::2] + acc[1::2, 1::2]
    return ((total + 2) // 4).astype(band.dtype)


def write_tiff(
    mosaic: SyntheticMosaic,
    path: Path,
    *,
    tile: int = 256,
    compression: str | None = "zlib",
    pyramid: bool = True,
    jpeg_quality: int = 90,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a tiled (by default pyramidal, SubIFD) OME-TIFF band by band.

    Pixel size goes in both the OME PhysicalSizeX/Y and the TIFF resolution
    tags (pixels per cm); class and seed in the OME Description (JSON) and a
    MapAnnotation, so any OME-aware viewer and plain tifffile read them back.

    Memory: one band of ``RENDER_CHUNK`` rows at full width plus the reduced
    levels (a quarter, a sixteenth, ... of the full image).
    """
    spec = mosaic.spec
    if compression == "jpeg" and spec.bits != 8:
        raise SyntheticError("JPEG compression needs 8-bit output: use --bits 8 or zlib")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = spec.height, spec.width
    dtype = mosaic.dtype
    level_shapes = _pyramid_shapes(height, width) if pyramid else []
    levels = [np.zeros(shape, dtype=dtype) for shape in level_shapes]
    n_bands = math.ceil(height / RENDER_CHUNK)
    codec: Any = None if compression in (None, "none") else compression
    codec_args = {"level": jpeg_quality} if codec == "jpeg" else None

    def tiles() -> Iterator[np.ndarray]:
        for band_index, y in enumerate(range(0, height, RENDER_CHUNK)):
            bh = min(RENDER_CHUNK, height - y)
            band = np.empty((bh, width), dtype=dtype)
            for x in range(0, width, RENDER_CHUNK):
                w = min(RENDER_CHUNK, width - x)
                band[:, x : x + w] = mosaic.render(x, y, w, bh)
            reduced, row = band, y
            for level in levels:
                reduced = _halve(reduced)
                row //= 2
                level[row : row + reduced.shape[0], : reduced.shape[1]] = reduced
            for ty in range(0, bh, tile):
                for tx in range(0, width, tile):
                    block = band[ty : ty + tile, tx : tx + tile]
                    if block.shape != (tile, tile):
                        padded = np.zeros((tile, tile), dtype=dtype)
                        padded[: block.shape[0], : block.shape[1]] = block
                        block = padded
                    yield block
            if progress is not None:
                progress(band_index + 1, n_bands)

    resolution = 1e4 / spec.pixel_size_um  # pixels per centimetre
    bigtiff = height * width * dtype.itemsize * 1.4 > 2**32 - 2**25
    meta = mosaic.metadata()
    ome = {
        "axes": "YX",
        "PhysicalSizeX": spec.pixel_size_um,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": spec.pixel_size_um,
        "PhysicalSizeYUnit": "µm",
        "Name": path.name.split(".")[0],
        "Description": json.dumps(meta),
        "MapAnnotation": {k: str(v) for k, v in meta.items()},
        # A UUID derived from the spec keeps "same seed, same bytes".
        "UUID": str(
            uuid.uuid5(
                uuid.NAMESPACE_URL, f"rcm-viewer-synthetic:{sorted(meta.items())}:{width}x{height}"
            )
        ),
    }
    with tifffile.TiffWriter(path, bigtiff=bigtiff, ome=True) as tif:
        tif.write(
            tiles(),
            shape=(height, width),
            dtype=dtype,
            tile=(tile, tile),
            compression=codec,
            compressionargs=codec_args,
            photometric="minisblack",
            resolution=(resolution, resolution),
            resolutionunit="CENTIMETER",
            subifds=len(levels) or None,
            metadata=ome,
            software=f"rcm-viewer synthetic generator v{GENERATOR_VERSION}",
        )
        for index, level in enumerate(levels, start=1):
            level_res = resolution / (2**index)
            tif.write(
                level,
                tile=(tile, tile),
                compression=codec,
                compressionargs=codec_args,
                photometric="minisblack",
                resolution=(level_res, level_res),
                resolutionunit="CENTIMETER",
                subfiletype=1,
            )
    return path


def mosaic_seed(base_seed: int, lesion_class: str, index: int) -> int:
    """Seed of the index-th mosaic of a class in a dataset (stable, non-overlapping)."""
    state = np.random.SeedSequence([base_seed, LESION_CLASSES.index(lesion_class), index])
    return int(state.generate_state(1)[0] & 0x7FFFFFFF)


def write_dataset(
    out_dir: Path,
    *,
    per_class: int,
    width: int,
    height: int | None = None,
    seed: int = 0,
    pixel_size_um: float | None = None,
    bits: int = 8,
    classes: Sequence[str] = LESION_CLASSES,
    compression: str | None = "zlib",
    progress: Callable[[int, int, Path], None] | None = None,
) -> list[Path]:
    """Write ``out_dir/<class>/<class>_<nnnn>.ome.tif`` plus ``out_dir/dataset.csv``."""
    out_dir = Path(out_dir)
    if per_class < 1:
        raise SyntheticError("--per-class must be at least 1")
    if not classes:
        raise SyntheticError("no classes given")
    for cls in classes:
        if cls not in LESION_CLASSES:
            raise SyntheticError(f"unknown class {cls!r}: use {', '.join(LESION_CLASSES)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise SyntheticError(f"{out_dir} exists and is not a folder")
    if pixel_size_um is not None and not 0.2 <= pixel_size_um <= 2.0:
        raise SyntheticError(f"pixel size {pixel_size_um} µm is outside 0.2-2.0 µm")
    height = height or width
    specs = []
    for cls in classes:
        for i in range(per_class):
            s = mosaic_seed(seed, cls, i)
            px = pixel_size_um
            if px is None:
                px = round(float(np.random.default_rng([s, 31]).uniform(0.5, 1.0)), 3)
            specs.append(MosaicSpec(cls, width, height, px, s, bits))
    for spec in specs:  # fail before writing anything
        spec.validate()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SyntheticError(f"cannot create {out_dir}: {exc.strerror}") from exc
    written: list[Path] = []
    rows = ["path,lesion_class,seed,pixel_size_um,width,height,bits"]
    counters: dict[str, int] = {}
    for n, spec in enumerate(specs, start=1):
        i = counters.get(spec.lesion_class, 0)
        counters[spec.lesion_class] = i + 1
        rel = Path(spec.lesion_class) / f"{spec.lesion_class}_{i:04d}.ome.tif"
        try:
            write_tiff(SyntheticMosaic(spec), out_dir / rel, compression=compression)
        except OSError as exc:
            raise SyntheticError(f"cannot write {out_dir / rel}: {exc.strerror or exc}") from exc
        written.append(out_dir / rel)
        rows.append(
            f"{rel.as_posix()},{spec.lesion_class},{spec.seed},{spec.pixel_size_um},"
            f"{spec.width},{spec.height},{spec.bits}"
        )
        if progress is not None:
            progress(n, len(specs), out_dir / rel)
    (out_dir / "dataset.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (out_dir / "README.txt").write_text(
        "Synthetic RCM-like mosaics made by `rcm-viewer synth` (procedural, no patient data).\n"
        "For testing and demonstration only; not for diagnosis.\n"
        f"Generator version {GENERATOR_VERSION}; parameters: "
        + json.dumps(
            {
                "per_class": per_class,
                "width": width,
                "height": height,
                "seed": seed,
                "pixel_size_um": pixel_size_um,
                "bits": bits,
                "classes": list(classes),
            }
        )
        + "\n",
        encoding="utf-8",
    )
    return written


def spec_dict(spec: MosaicSpec) -> dict[str, Any]:
    return asdict(spec)
