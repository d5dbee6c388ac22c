"""Is the answer scale-sensitive? Classify again at the pixel size +-25 % (imports torch).

A typed or estimated pixel size can be off; benchmarks/bench_scale.py measures how the
prediction moves when it is. This optional check (it costs two more classifications)
reruns the mosaic as if its pixels were 25 % smaller and 25 % larger and reports
"scale-sensitive" when the most likely class changes, so the reader knows the answer
rests on the pixel size being right. Kept out of engine.py so backends can change there.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcm_viewer.inference.bundle import ModelBundle
from rcm_viewer.inference.prediction import Prediction
from rcm_viewer.mosaic import MAX_PIXEL_SIZE_UM, MIN_PIXEL_SIZE_UM, Mosaic

#: Relative pixel-size errors tried by ``check_scale``.
SCALE_FACTORS = (0.75, 1.25)


@dataclass(frozen=True)
class ScaleCheck:
    pixel_size_um: float
    top_class: str | None
    #: factor -> (top class, its probability) at pixel_size_um * factor
    shifted: dict[float, tuple[str | None, float | None]]
    sensitive: bool
    text: str


def check_scale(
    mosaic: Mosaic,
    bundle: ModelBundle,
    prediction: Prediction,
    *,
    factors: tuple[float, ...] = SCALE_FACTORS,
    device: str = "auto",
    batch_size: int = 16,
) -> ScaleCheck:
    """Classify ``mosaic`` at ``prediction.pixel_size_um`` x each factor; compare top classes."""
    from rcm_viewer.inference.engine import classify_mosaic

    base = float(prediction.pixel_size_um or 0.0)
    shifted: dict[float, tuple[str | None, float | None]] = {}
    for factor in factors:
        um = min(max(base * factor, MIN_PIXEL_SIZE_UM), MAX_PIXEL_SIZE_UM)
        other = classify_mosaic(
            mosaic, bundle, pixel_size_um=um, device=device, batch_size=batch_size
        )
        top = other.top_class
        shifted[factor] = (top, None if top is None else other.probability(top))
    changed = [f for f, (top, _) in shifted.items() if top != prediction.top_class]
    names = dict(zip(prediction.class_ids, prediction.class_names, strict=True))
    if changed:
        parts = ", ".join(
            f"{names.get(shifted[f][0] or '', shifted[f][0])} at {(f - 1) * 100:+.0f} %"
            for f in changed
        )
        text = (
            f"Scale-sensitive: with the pixel size off by "
            f"{' or '.join(f'{(f - 1) * 100:+.0f} %' for f in changed)} the answer "
            f"changes ({parts}). Make sure the pixel size is right."
        )
    else:
        text = (
            f"Not scale-sensitive: the most likely class stays the same with the pixel "
            f"size off by {' and '.join(f'{(f - 1) * 100:+.0f} %' for f in factors)}."
        )
    return ScaleCheck(base, prediction.top_class, shifted, bool(changed), text)
