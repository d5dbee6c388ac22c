"""Model bundles: a folder with ``manifest.json``, the weights and ``MODEL_CARD.md``.

Reading and verifying a bundle is torch-free (the GUI lists models and shows their card
before torch loads); only turning the weights into a network (``network.py``) and
``save_bundle`` import torch, lazily.

Weights are a plain tensor dictionary: ``model.safetensors`` when the ``safetensors``
package is installed, else ``weights.pt`` read with ``torch.load(weights_only=True)``. No
pickled Python object is ever executed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcm_viewer.errors import ModelBundleError
from rcm_viewer.inference.manifest import (
    MANIFEST_NAME,
    MAX_NETWORK_BYTES,
    MODEL_CARD_NAME,
    ONNX_NAME,
    ModelManifest,
    build_manifest,
    manifest_seal,
    onnx_entry,
    parse_manifest,
    sha256_bytes,
)

if TYPE_CHECKING:
    import torch

    from rcm_viewer.inference.ood import OodModel

log = logging.getLogger(__name__)

#: Names a file in ``models/`` that picks the default bundle when there are several.
DEFAULT_POINTER_NAME = "DEFAULT"
#: Overrides the default bundle folder (tests, portable installs, a clinic's own model).
MODEL_DIR_ENV = "RCM_VIEWER_MODEL_DIR"
#: Largest manifest or model card read (both are a few kilobytes; a link to /dev/zero is
#: refused instead of filling the memory).
MAX_TEXT_BYTES = 4 * 1024**2


@dataclass(frozen=True)
class ModelBundle:
    """A verified bundle on disk: its folder and parsed manifest.

    Frozen and hashable, so the engine can cache the loaded network per bundle.
    """

    path: Path
    manifest: ModelManifest
    #: Who vouches for it (inference/signing.py): "signed by NAME", "unverified: unsigned"
    #: or "unverified: unknown key ID". A bad signature never gets this far (refused).
    trust: str = "unverified: unsigned"

    @property
    def verified(self) -> bool:
        from rcm_viewer.inference.signing import is_verified

        return is_verified(self.trust)

    @property
    def weights_path(self) -> Path:
        return self.path / self.manifest.weights_file

    @property
    def model_card_path(self) -> Path:
        return self.path / self.manifest.model_card_file

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def onnx_path(self) -> Path | None:
        """The exported network (``rcm-viewer export-onnx``), or None when there is none."""
        return self.path / self.manifest.onnx_file if self.manifest.onnx_file else None

    def model_card(self) -> str:
        data = _read_file(self.model_card_path, self.path, MAX_TEXT_BYTES)
        return data.decode("utf-8", errors="replace")

    def ood_model(self) -> OodModel | None:
        """The sealed OOD statistics (inference/ood.py), or None when the bundle has none."""
        from rcm_viewer.inference.ood import load_ood

        return load_ood(self.path, self.manifest.ood_file, self.manifest.ood_sha256)

    def read_weights(self) -> bytes:
        """Weights bytes, checked against the manifest again (the file may have changed)."""
        data = _read_file(self.weights_path, self.path, MAX_NETWORK_BYTES)
        if sha256_bytes(data) != self.manifest.weights_sha256:
            raise _mismatch(self.weights_path, self.path)
        return data

    def read_onnx(self) -> bytes:
        """The exported network's bytes, checked against the manifest's seal again."""
        path = self.onnx_path
        if path is None:
            raise ModelBundleError(
                f"{self.path.name} has no {ONNX_NAME}: run rcm-viewer export-onnx {self.path}"
            )
        data = _read_file(path, self.path, self.manifest.onnx_bytes)
        if sha256_bytes(data) != self.manifest.onnx_sha256:
            raise _mismatch(path, self.path)
        return data


@dataclass(frozen=True)
class BundleEntry:
    """One folder found by ``list_bundles``: a usable manifest, or why it is not usable."""

    path: Path
    manifest: ModelManifest | None
    problem: str | None = None
    #: ``ModelBundle.trust`` of a usable bundle ("" for a broken one).
    trust: str = ""


def safetensors_available() -> bool:
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        return False
    return True


def _where(path: Path, bundle_dir: Path) -> str:
    return f"{path.name} in {bundle_dir}"


def _mismatch(path: Path, bundle_dir: Path) -> ModelBundleError:
    return ModelBundleError(
        f"{_where(path, bundle_dir)} does not match its checksum in {MANIFEST_NAME}: "
        "the file was changed or damaged after export"
    )


def _size_text(size: int) -> str:
    return f"{size / 1024**2:.1f} MB" if size >= 1024**2 else f"{size} bytes"


def _read_file(path: Path, bundle_dir: Path, limit: int) -> bytes:
    """A bundle file's bytes: a regular file (or a link to one) of at most ``limit`` bytes.

    Opened non-blocking and checked with ``fstat`` before reading, so a FIFO cannot hang
    the reader and a link to a device (/dev/zero) cannot fill the memory; reading stops at
    ``limit + 1`` bytes in case the file grows while it is read.
    """
    where = _where(path, bundle_dir)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ModelBundleError(f"{where} is missing") from None
    except IsADirectoryError:
        raise ModelBundleError(f"{where} is a folder, not a file") from None
    except OSError as exc:
        raise ModelBundleError(f"{where} cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ModelBundleError(f"{where} is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise ModelBundleError(
                f"{where} is not a regular file (a pipe, device or link to one): refused"
            )
        if info.st_size > limit:
            raise ModelBundleError(
                f"{where} is too large ({_size_text(info.st_size)}; at most "
                f"{_size_text(limit)} expected): refused"
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ModelBundleError(f"{where} cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ModelBundleError(f"{where} grew while it was read: refused")
    return data


def read_manifest(bundle_dir: str | os.PathLike[str]) -> ModelManifest:
    """Parse and check a bundle's manifest (schema, fields, seal, signature); files are not
    hashed. A manifest signed by the project key reads as a demonstration model."""
    return _trusted_manifest(Path(bundle_dir).expanduser(), check_signature=True)[0]


def _trusted_manifest(directory: Path, *, check_signature: bool) -> tuple[ModelManifest, str]:
    """The manifest as this installation reads it, and who vouches for it (signing.py)."""
    from rcm_viewer.inference.signing import TRUST_UNSIGNED, verify_manifest_bytes

    manifest, manifest_bytes = _read_manifest_bytes(directory)
    if not check_signature:
        return manifest, TRUST_UNSIGNED
    verdict = verify_manifest_bytes(directory, manifest_bytes)
    if verdict.force_demonstration and not manifest.synthetic:
        manifest = dataclasses.replace(manifest, synthetic=True)
    return manifest, verdict.trust


def _read_manifest_bytes(bundle_dir: str | os.PathLike[str]) -> tuple[ModelManifest, bytes]:
    """The parsed manifest and the exact bytes it was parsed from (what a signature signs)."""
    directory = Path(bundle_dir).expanduser()
    if not directory.exists():
        raise ModelBundleError(f"model bundle {directory} does not exist")
    if not directory.is_dir():
        raise ModelBundleError(f"model bundle {directory} is not a folder")
    raw = _read_file(directory / MANIFEST_NAME, directory, MAX_TEXT_BYTES)
    where = _where(directory / MANIFEST_NAME, directory)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelBundleError(f"{where} is not valid JSON ({exc})") from None
    return parse_manifest(data, where), raw


def load_bundle(
    bundle_dir: str | os.PathLike[str],
    *,
    verify: bool = True,
    _verify_onnx: bool = True,
    check_signature: bool = True,
) -> ModelBundle:
    """Open a bundle and verify it: manifest seal, weights and model card checksums.

    ``verify=False`` skips hashing the weights (listing many bundles quickly); the weights
    are hashed again whenever they are loaded into a network, whatever this says. The
    signature (signing.py) is always checked against the manifest bytes parsed here: a
    mismatch is refused, and a bundle signed by the project key is a demonstration model
    whatever its manifest says. ``check_signature=False`` (signing itself) skips it.
    """
    directory = Path(bundle_dir).expanduser()
    manifest, trust = _trusted_manifest(directory, check_signature=check_signature)
    card = _read_file(directory / manifest.model_card_file, directory, MAX_TEXT_BYTES)
    if sha256_bytes(card) != manifest.model_card_sha256:
        raise _mismatch(directory / manifest.model_card_file, directory)
    bundle = ModelBundle(directory.resolve(), manifest, trust)
    sealed = [directory / manifest.weights_file]
    if manifest.onnx_file and _verify_onnx:
        sealed.append(directory / manifest.onnx_file)
    for path in sealed:
        _check_regular(path, directory, MAX_NETWORK_BYTES)
    if verify:
        bundle.read_weights()
        if manifest.onnx_file and _verify_onnx:
            bundle.read_onnx()
    if manifest.ood_file:
        bundle.ood_model()  # checks the seal of the OOD statistics (a changed byte refused)
    return bundle


def _check_regular(path: Path, bundle_dir: Path, limit: int) -> None:
    """Refuse a missing, non-regular or oversized file without opening it (listing)."""
    where = _where(path, bundle_dir)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ModelBundleError(f"{where} is missing") from None
    except OSError as exc:
        raise ModelBundleError(f"{where} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ModelBundleError(f"{where} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ModelBundleError(
            f"{where} is not a regular file (a pipe, device or link to one): refused"
        )
    if info.st_size > limit:
        raise ModelBundleError(f"{where} is too large ({_size_text(info.st_size)}): refused")


def attach_ood(bundle_dir: str | os.PathLike[str], model: OodModel) -> ModelBundle:
    """Write ``ood.npz`` into a bundle and re-seal its manifest (weights untouched)."""
    from rcm_viewer.fileio import atomic_write
    from rcm_viewer.inference.manifest import manifest_seal
    from rcm_viewer.inference.ood import OOD_FILE

    directory = Path(bundle_dir).expanduser()
    read_manifest(directory)  # the bundle must be sound before it is re-sealed
    data = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    payload = model.to_bytes()
    atomic_write(directory / OOD_FILE, payload)
    data.pop("manifest_sha256", None)
    data["ood"] = {"file": OOD_FILE, "sha256": sha256_bytes(payload)}
    data["manifest_sha256"] = manifest_seal(data)
    atomic_write(
        directory / MANIFEST_NAME,
        (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
    )
    _drop_signature(directory)
    return load_bundle(directory)


def list_bundles(models_dir: str | os.PathLike[str] | None = None) -> list[BundleEntry]:
    """Every sub-folder of ``models_dir`` (default: bundled models, then the user's) with a
    manifest.

    Broken bundles are listed with their problem rather than hidden, so a model picker can
    say why a model is unusable. Weights are not hashed here (see ``load_bundle``).
    """
    from rcm_viewer.paths import model_search_dirs

    if models_dir is None:  # the bundled models, then the user models folder
        return [e for root in model_search_dirs() for e in list_bundles(root)]
    root = Path(models_dir).expanduser()
    entries: list[BundleEntry] = []
    if not root.is_dir():
        return entries
    for child in sorted(root.iterdir()):
        if not child.is_dir() or not os.path.lexists(child / MANIFEST_NAME):
            continue
        try:
            bundle = load_bundle(child, verify=False)
            entries.append(BundleEntry(bundle.path, bundle.manifest, trust=bundle.trust))
        except ModelBundleError as exc:
            entries.append(BundleEntry(child.resolve(), None, str(exc)))
    return entries


def _holds_bundle(root: Path) -> bool:
    return root.is_dir() and any((c / MANIFEST_NAME).is_file() for c in root.iterdir())


def default_bundle_dir(models_dir: str | os.PathLike[str] | None = None) -> Path:
    """The model used when none is chosen.

    ``$RCM_VIEWER_MODEL_DIR`` if set; else the only bundle in ``models/``; else the one
    that ``models/DEFAULT`` names. Raises ``ModelBundleError`` with what to do otherwise.
    """
    from rcm_viewer.paths import MODELS_DIR

    override = os.environ.get(MODEL_DIR_ENV)
    if override and models_dir is None:
        return Path(override).expanduser()
    root = Path(models_dir).expanduser() if models_dir is not None else MODELS_DIR
    if models_dir is None and not _holds_bundle(root):  # nothing bundled: the user's folder
        from rcm_viewer.paths import user_models_dir

        root = user_models_dir()
    pointer = root / DEFAULT_POINTER_NAME
    if pointer.is_file():
        name = _read_file(pointer, root, 4096).decode("utf-8", errors="replace").strip()
        if not (root / name / MANIFEST_NAME).is_file():
            raise ModelBundleError(
                f"{pointer} names {name!r}, which is not a model bundle in {root}"
            )
        return root / name
    candidates = (
        sorted(child for child in root.iterdir() if (child / MANIFEST_NAME).is_file())
        if root.is_dir()
        else []
    )
    if not candidates:
        raise ModelBundleError(
            f"no classifier model is installed ({root} holds no model bundle): "
            "choose one with --model DIR"
        )
    if len(candidates) > 1:
        names = ", ".join(c.name for c in candidates)
        raise ModelBundleError(
            f"{root} holds several models ({names}): choose one with --model DIR or name it "
            f"in {pointer}"
        )
    return candidates[0]


# ------------------------------------------------------------------------------ saving


def save_bundle(
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    manifest_fields: Mapping[str, Any],
    bundle_dir: str | os.PathLike[str],
    *,
    fp16: bool = False,
    model_card: str | None = None,
    overwrite: bool = False,
) -> ModelBundle:
    """Write a sealed bundle (weights, model card, manifest) and return it, verified.

    ``manifest_fields`` is the keyword form of ``manifest.build_manifest`` (name, version,
    pixel_size_um, training={"synthetic": ..., "data": ...}, ...). The weights must fit
    the named architecture and class count (checked before anything is written).
    ``fp16`` halves the file; the engine computes in float32 whatever the file holds.
    ``model_card`` replaces the generated card (Markdown). Files are written to a
    temporary folder and moved into place, so a crash never leaves half a bundle.
    """
    import torch

    from rcm_viewer.inference.network import build_network

    directory = Path(bundle_dir).expanduser()
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise ModelBundleError(f"{directory} already exists and is not empty")
    state = model.state_dict() if isinstance(model, torch.nn.Module) else dict(model)
    state = {
        key: (
            value.detach().to("cpu", torch.float16 if fp16 else torch.float32)
            if value.is_floating_point()
            else value.detach().cpu()
        ).contiguous()
        for key, value in state.items()
    }
    use_safetensors = safetensors_available()
    weights_format = "safetensors" if use_safetensors else "torch_state_dict"
    weights_file = "model.safetensors" if use_safetensors else "weights.pt"
    draft = build_manifest(
        manifest_fields,
        weights_file=weights_file,
        weights_sha256="0" * 64,
        weights_format=weights_format,
        weights_dtype="float16" if fp16 else "float32",
    )
    network = build_network(draft.architecture, draft.n_classes)
    try:
        network.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True
        )
    except RuntimeError as exc:
        raise ModelBundleError(
            f"the weights do not fit a {draft.architecture} with {draft.n_classes} classes "
            f"({str(exc).splitlines()[0]})"
        ) from None

    if use_safetensors:
        from safetensors.torch import save as safetensors_save

        weights = safetensors_save(state)
    else:
        import io

        buffer = io.BytesIO()
        torch.save(state, buffer)
        weights = buffer.getvalue()
    manifest = build_manifest(
        manifest_fields,
        weights_file=weights_file,
        weights_sha256=sha256_bytes(weights),
        weights_format=weights_format,
        weights_dtype=draft.weights_dtype,
    )
    card = (model_card if model_card is not None else render_model_card(manifest)).encode("utf-8")
    manifest = build_manifest(
        {**manifest_fields, "created": manifest.created},
        weights_file=weights_file,
        weights_sha256=manifest.weights_sha256,
        weights_format=weights_format,
        weights_dtype=draft.weights_dtype,
        model_card_sha256=sha256_bytes(card),
    )
    manifest_bytes = (
        json.dumps(manifest.sealed_dict(), indent=2, ensure_ascii=False) + "\n"
    ).encode("utf-8")

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        (staging / weights_file).write_bytes(weights)
        (staging / MODEL_CARD_NAME).write_bytes(card)
        (staging / MANIFEST_NAME).write_bytes(manifest_bytes)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            directory.rename(old)
            staging.rename(directory)
            _remove_tree(old)
        else:
            staging.rename(directory)
    except OSError as exc:
        _remove_tree(staging)
        raise ModelBundleError(f"cannot write model bundle {directory}: {exc}") from exc
    return load_bundle(directory)


def export_onnx(bundle_dir: str | os.PathLike[str]) -> tuple[ModelBundle, bool]:
    """Write ``network.onnx`` into a bundle and seal it in the manifest (imports torch).

    Idempotent: a bundle whose sealed export is intact is returned as it is (False); a
    missing or damaged export is written again (True). Only the manifest's ``onnx`` entry
    and its seal change; the weights and the model card are never rewritten.
    """
    from rcm_viewer.fileio import atomic_write
    from rcm_viewer.inference.network import export_onnx_bytes

    bundle = load_bundle(bundle_dir, _verify_onnx=False)
    if bundle.manifest.onnx_file:
        try:
            bundle.read_onnx()
            return bundle, False
        except ModelBundleError as exc:
            log.info("re-exporting %s: %s", bundle.path, exc)
    directory = bundle.path
    data = export_onnx_bytes(bundle)
    manifest_path = directory / MANIFEST_NAME
    raw = json.loads(_read_file(manifest_path, directory, MAX_TEXT_BYTES).decode("utf-8"))
    raw.pop("manifest_sha256", None)
    raw["onnx"] = onnx_entry(ONNX_NAME, sha256_bytes(data), len(data))
    raw["manifest_sha256"] = manifest_seal(raw)
    try:
        atomic_write(directory / ONNX_NAME, data, mode=0o644)
        atomic_write(
            manifest_path, json.dumps(raw, indent=2, ensure_ascii=False) + "\n", mode=0o644
        )
    except OSError as exc:
        raise ModelBundleError(f"cannot write {ONNX_NAME} into {directory}: {exc}") from exc
    _drop_signature(directory)
    return load_bundle(directory), True


def _drop_signature(directory: Path) -> None:
    from rcm_viewer.inference.signing import drop_signature

    drop_signature(directory)


def _remove_tree(path: Path) -> None:
    import shutil

    with contextlib.suppress(OSError):
        shutil.rmtree(path)


def render_model_card(manifest: ModelManifest) -> str:
    """A model card in the sections of Mitchell et al. 2019, from the manifest's facts."""
    t = dict(manifest.training)
    lines = [f"# Model card: {manifest.name} {manifest.version}", ""]
    if manifest.synthetic:
        lines += [
            "> **Demonstration model.** Trained on procedurally generated (synthetic) images,",
            "> not on patient data. Its outputs say nothing about real lesions.",
            "",
        ]
    counts = t.get("counts_per_class") or {}
    metrics = t.get("metrics") or {}
    lines += [
        "## Model details",
        f"- Architecture: {manifest.architecture} (global average pool + one linear layer)",
        f"- Classes: {', '.join(f'{n} (`{i}`)' for i, n in zip(manifest.class_ids, manifest.class_names, strict=True))}",  # noqa: E501
        f"- Input: {manifest.tile_px} x {manifest.tile_px} px tiles at "
        f"{manifest.pixel_size_um:g} µm/px ({manifest.tile_px * manifest.pixel_size_um:g} µm), "
        f"stride {manifest.tile_stride_px} px; {manifest.channels.replace('_', ' ')}; "
        f"intensity: {manifest.intensity_scaling.replace('_', ' ')}",
        f"- Aggregation: {manifest.aggregation_description}",
        f"- Calibration: temperature {manifest.temperature:g} ({manifest.calibration_note})",
        f"- Weights: `{manifest.weights_file}` ({manifest.weights_dtype}), sha256 "
        f"`{manifest.weights_sha256}`",
        f"- Created: {manifest.created}",
        "",
        "## Intended use",
        manifest.intended_use,
        "",
        "## Factors",
        str(
            t.get(
                "factors",
                "Device generation (VivaScope 1500/3000), skin type, body site "
                "and depth of the mosaic may change performance; not evaluated.",
            )
        ),
        "",
        "## Metrics",
        "\n".join(f"- {k}: {v}" for k, v in metrics.items()) or "Not reported.",
        "",
        "## Training and evaluation data",
        str(t.get("data", "")),
        "\n".join(f"- {k}: {v}" for k, v in counts.items()),
        "",
        "## Caveats and recommendations",
        str(
            t.get(
                "caveats",
                "Probabilities are calibrated only as far as the data above "
                "allows. Review the full mosaic; do not rely on the heatmap "
                "alone.",
            )
        ),
        "",
    ]
    return "\n".join(lines)
