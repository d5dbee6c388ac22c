"""Data objects: heatmap quantisation, AI result checks, file fingerprints, 'changed after AI'."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from rcm_viewer.cases import AIResult, Assessment, CaseRecord, Heatmap, file_sha256
from rcm_viewer.errors import CaseStoreError

CLASSES = ("melanoma", "bcc", "naevus")
WEIGHTS = "ab" * 32


def test_heatmap_quantisation_error_is_within_half_a_step() -> None:
    rng = np.random.default_rng(7)
    values = rng.uniform(-0.5, 2.0, size=(3, 40, 60))
    heatmap = Heatmap.from_float(values, CLASSES, mosaic_shape=(8000, 12000))
    assert heatmap.data.dtype == np.uint8 and heatmap.data.shape == (3, 40, 60)
    step = (values.max() - values.min()) / 255
    assert np.max(np.abs(heatmap.to_float() - values)) <= step / 2 + 1e-6
    again = Heatmap.from_blob(heatmap.meta(), heatmap.to_blob())
    assert again == heatmap and again.mosaic_shape == (8000, 12000)
    assert not heatmap.data.flags.writeable


def test_heatmap_refuses_nan_and_mismatched_class_ids() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Heatmap.from_float(np.full((1, 2, 2), np.nan), ("melanoma",))
    with pytest.raises(ValueError, match="class ids"):
        Heatmap(np.zeros((2, 4, 4), np.uint8), CLASSES, (0.0, 1.0))


def test_flat_heatmap_does_not_divide_by_zero() -> None:
    heatmap = Heatmap.from_float(np.full((3, 2, 2), 0.25), CLASSES)
    np.testing.assert_allclose(heatmap.to_float(), 0.25)


def test_ai_result_from_probabilities_derives_the_top_class() -> None:
    result = AIResult.from_probabilities(
        "rcm-resnet34", "1.0", WEIGHTS, {"melanoma": 0.2, "bcc": 0.7, "naevus": 0.1}
    )
    assert result.top_class == "bcc"
    assert result.probability_by_class["melanoma"] == pytest.approx(0.2)
    assert result.created_at.tzinfo is not None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"probabilities": (0.5, 0.6, 0.1)}, "sum to"),
        ({"probabilities": (0.5, 0.5)}, "3 classes but 2"),
        ({"top_class": "scc"}, "not among"),
        ({"weights_sha256": "xyz"}, "64 lower-case"),
        ({"probabilities": (1.2, -0.1, -0.1)}, "0..1"),
    ],
)
def test_ai_result_refuses_inconsistent_values(changes: dict, message: str) -> None:
    fields = {
        "model_name": "rcm-resnet34",
        "model_version": "1.0",
        "weights_sha256": WEIGHTS,
        "class_ids": CLASSES,
        "probabilities": (0.6, 0.3, 0.1),
        "top_class": "melanoma",
        "created_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    with pytest.raises(CaseStoreError, match=message):
        AIResult(**(fields | changes))


def test_file_sha256_reads_in_chunks_and_reports_progress(tmp_path: Path) -> None:
    path = tmp_path / "mosaic.tif"
    payload = np.random.default_rng(1).integers(0, 256, 3_000_001, dtype=np.uint8).tobytes()
    path.write_bytes(payload)
    seen: list[tuple[int, int]] = []
    digest = file_sha256(path, chunk_bytes=1 << 20, progress=lambda d, t: seen.append((d, t)))
    assert digest == hashlib.sha256(payload).hexdigest()
    assert len(seen) == 3 and seen[-1] == (len(payload), len(payload))


def test_file_sha256_of_a_missing_file_is_a_readable_error(tmp_path: Path) -> None:
    with pytest.raises(CaseStoreError, match="missing.tif"):
        file_sha256(tmp_path / "missing.tif")


def make_record(initial: Assessment, revised: Assessment | None, ai: bool) -> CaseRecord:
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    return CaseRecord(
        case_id="C1",
        patient_pseudonym="P1",
        reader_mode="reader_first",
        initial=initial,
        revised=revised,
        created_at=moment,
        updated_at=moment,
        ai_result_stored=ai,
    )


def test_changed_after_ai_looks_at_diagnosis_and_management() -> None:
    initial = Assessment(
        diagnosis="naevus",
        confidence=3,
        management="routine",
        answers={"melanoma_score": {"non_edged_papillae": "absent"}},
        committed_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    same = dataclasses.replace(initial, stage="revised", committed_at=None)
    assert make_record(initial, None, ai=True).changed_after_ai is None
    assert make_record(initial, same, ai=False).changed_after_ai is None
    assert make_record(initial, same, ai=True).changed_after_ai is False

    more_confident = dataclasses.replace(
        same, confidence=5, answers={"melanoma_score": {"non_edged_papillae": "present"}}
    )
    record = make_record(initial, more_confident, ai=True)
    assert record.changed_after_ai is False
    assert record.changed_fields_after_ai == ("confidence", "answers.melanoma_score")

    to_melanoma = dataclasses.replace(same, diagnosis="melanoma", management="excision_biopsy")
    record = make_record(initial, to_melanoma, ai=True)
    assert record.changed_after_ai is True
    assert record.changed_fields_after_ai == ("diagnosis", "management")


def test_assessment_drops_unanswered_items_and_checks_vocabulary() -> None:
    assessment = Assessment(answers={"melanoma_score": {"a": None}, "x": {"b": "present"}})
    assert assessment.answers == {"x": {"b": "present"}}
    with pytest.raises(CaseStoreError, match="confidence"):
        Assessment(confidence=6)
    with pytest.raises(CaseStoreError, match="diagnosis"):
        Assessment(diagnosis="scc")
    assert Assessment.from_dict(assessment.to_dict()) == assessment
