"""Reports of real cases: the PDF parses back, the JSON sidecar, the reader-first rule."""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

import pytest
from pypdf import PdfReader
from report_case_helpers import PSEUDONYM, READER, SITE, make_case

from rcm_viewer.errors import ReportError
from rcm_viewer.reports.export import SCHEMA_VERSION, export_report
from rcm_viewer.reports.model import INTENDED_USE, SYNTHETIC_BANNER, ReportOptions


def _text(pdf: Path) -> tuple[str, PdfReader]:
    reader = PdfReader(str(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    # fonts draw "fl"/"fi" as ligatures: compare text as typed
    return " ".join(unicodedata.normalize("NFKC", text).split()), reader


def _images(reader: PdfReader) -> int:
    return sum(len(page.images) for page in reader.pages)


def test_full_report_has_every_section(case, tmp_path: Path) -> None:
    pdf, sidecar = tmp_path / "r.pdf", tmp_path / "r.json"
    report = export_report(
        case.store, case.case_id, pdf, sidecar, ReportOptions(institution="St Example Dermatology")
    )
    assert report is not None and report.image_note == ""
    text, reader = _text(pdf)
    assert 1 <= len(reader.pages) <= 3
    for needle in (
        "St Example Dermatology",
        case.case_id,
        PSEUDONYM,
        SITE,
        READER,
        "Acquisition date",
        "Report date",
        "lesion.tif",
        "0.75 µm/px",
        SYNTHETIC_BANNER,
        "AI result",
        "rcm-demo-resnet 1.2",
        "ab" * 32,
        "Melanoma",
        "71%",
        "19%",
        "10%",
        "Reader assessments",
        "Initial (unaided)",
        "Revised (after AI)",
        "Excision / biopsy",
        "3/5",
        "4/5",
        "Irregular honeycomb at the periphery.",
        "Melanoma score (Pellacani 2005)",
        "Roundish pagetoid cells",
        "Region annotations",
        "Pagetoid cells",
        "Atypical basal cells",
        "Dendritic cell",
        "rectangle",
        "ellipse",
        "cluster near the centre",
        "Close-ups",
        "full resolution",
        "Intended use",
        "not a diagnostic device",
        "rcm-viewer 0.1.0",
        f"page 1 of {len(reader.pages)}",
        "Heatmap of the most likely class",
    ):
        assert unicodedata.normalize("NFKC", needle) in text, needle
    assert " ".join(INTENDED_USE.split()[:8]) in text
    # 2 overviews + 4 close-ups + legend + 3 probability bars
    assert _images(reader) >= 10
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["header"]["case_id"] == case.case_id
    assert data["header"]["patient_pseudonym"] == PSEUDONYM
    assert data["ai_result"]["shown"] and data["ai_result"]["banner"] == SYNTHETIC_BANNER
    assert data["ai_result"]["unverified_model"] is False  # no "unverified_model" flag
    assert "Unverified model" not in text
    assert [p["probability"] for p in data["ai_result"]["probabilities"]] == [0.71, 0.19, 0.10]
    assert [i["key"] for i in data["images"]] == ["overview", "heatmap"]
    assert data["images"][0]["scale_bar"]["length_um"] > 0
    assert len(data["closeups"]) == 4 and len(data["annotations"]) == 4
    first = data["annotations"][0]
    assert first["criterion"] == "melanoma_score.roundish_pagetoid_cells"
    assert first["measure"] == "area 0.022 mm²"  # 240 x 160 px at 0.75 µm
    assert data["initial_assessment"]["diagnosis"] == "Melanoma"
    assert data["revised_assessment"]["confidence"] == "4/5"
    melanoma = data["checklists"][0]
    assert melanoma["checklist_id"] == "melanoma_score"
    assert "4 of 8" in melanoma["initial_score"] and "5 of 8" in melanoma["revised_score"]
    assert data["intended_use"] == INTENDED_USE


def test_reader_first_hides_the_ai_until_the_initial_is_committed(tmp_path: Path) -> None:
    fixture = make_case(tmp_path / "c", commit=False)
    pdf, sidecar = tmp_path / "r.pdf", tmp_path / "r.json"
    export_report(fixture.store, fixture.case_id, pdf, sidecar)
    text, reader = _text(pdf)
    assert "AI result withheld" in text and "not committed" in text
    for hidden in (
        "71%",
        "rcm-demo-resnet",
        SYNTHETIC_BANNER,
        "Heatmap of the most likely",
        "Revised (after AI)",
    ):
        assert hidden not in text, hidden
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    assert data["ai_result"]["shown"] is False and data["ai_result"]["probabilities"] == []
    assert [i["key"] for i in data["images"]] == ["overview"]
    assert "ab" * 32 not in sidecar.read_text(encoding="utf-8")
    fixture.store.close()


def test_anonymise_and_no_heatmap_and_letter(case, tmp_path: Path) -> None:
    pdf, sidecar = tmp_path / "r.pdf", tmp_path / "r.json"
    export_report(
        case.store,
        case.case_id,
        pdf,
        sidecar,
        ReportOptions(anonymise=True, heatmap=False, paper="letter"),
    )
    text, reader = _text(pdf)
    assert PSEUDONYM not in text and "lesion.tif" not in text
    assert "removed (anonymised)" in text and case.case_id in text
    assert "Heatmap of the most likely" not in text and "71%" in text
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (612, 792)
    raw = sidecar.read_text(encoding="utf-8")
    data = json.loads(raw)
    assert PSEUDONYM not in raw and "lesion.tif" not in raw
    assert data["header"]["report_date"] is None and data["header"]["acquisition_date"] is None
    assert data["ai_result"]["created_at"] is None
    assert data["initial_assessment"]["committed_at"] == "committed"
    assert not re.search(r"20\d\d-\d\d-\d\d", raw), "a date survived anonymisation"
    assert [i["key"] for i in data["images"]] == ["overview"]


def test_missing_mosaic_gives_a_note_instead_of_images(case, tmp_path: Path) -> None:
    case.mosaic.rename(case.folder / "moved-away.tif")
    pdf = tmp_path / "r.pdf"
    report = export_report(case.store, case.case_id, pdf)
    assert report is not None and not report.images and not report.closeups
    text, reader = _text(pdf)
    assert "lesion.tif was not found" in text and "without images" in text
    assert "Pagetoid cells" in text and "71%" in text  # the stored case is all there
    assert _images(reader) == 3  # only the probability bars


def test_unwritable_path_is_one_clear_line_and_nothing_is_left(case, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "r.pdf"
    with pytest.raises(ReportError, match="folder .*no-such-folder does not exist"):
        export_report(case.store, case.case_id, missing)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a file as the folder
            blocker = tmp_path / "a-file"
            blocker.write_text("x")
            target = blocker / "r.pdf"
        else:
            target = locked / "r.pdf"
        with pytest.raises(ReportError) as info:
            export_report(case.store, case.case_id, target)
        assert "\n" not in str(info.value) and "r.pdf" in str(info.value)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
    with pytest.raises(ReportError, match="No report for case NOPE"):
        export_report(case.store, "NOPE", tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


def test_a_failed_write_keeps_the_old_report(case, tmp_path: Path, monkeypatch) -> None:
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"old report")
    import rcm_viewer.fileio as fileio

    def full_disk(stream):  # a real OSError from the write itself, as a full disk gives
        raise OSError(28, "No space left on device")

    real = fileio.atomic_write_with
    monkeypatch.setattr(
        fileio, "atomic_write_with", lambda path, write, **kw: real(path, full_disk, **kw)
    )
    with pytest.raises(ReportError, match="No space left on device"):
        export_report(case.store, case.case_id, pdf)
    assert pdf.read_bytes() == b"old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "r.pdf"]


def test_long_notes_wrap_onto_further_pages_and_are_all_there(tmp_path: Path) -> None:
    words = [f"word{i:04d}" for i in range(900)]
    notes = "Long note. " + " ".join(words) + " END-OF-NOTES"
    fixture = make_case(tmp_path / "c", notes=notes)
    pdf = tmp_path / "r.pdf"
    export_report(fixture.store, fixture.case_id, pdf)
    text, reader = _text(pdf)
    short_pdf = tmp_path / "short.pdf"
    short = make_case(tmp_path / "s")
    export_report(short.store, short.case_id, short_pdf)
    assert len(reader.pages) > len(PdfReader(str(short_pdf)).pages)
    assert "END-OF-NOTES" in text
    # pypdf sometimes splits a word at a tab stop ("w\nord1364"): compare without spaces
    joined = "".join(text.split())
    for word in words:  # nothing cut off silently
        assert word in joined, word
    last = reader.pages[-1].extract_text()
    assert f"page {len(reader.pages)} of {len(reader.pages)}" in " ".join(last.split())
    fixture.store.close()
    short.store.close()


def test_cancel_writes_nothing(case, tmp_path: Path) -> None:
    pdf = tmp_path / "r.pdf"
    assert export_report(case.store, case.case_id, pdf, cancel=lambda: True) is None
    assert not pdf.exists()


def test_a_bare_case_and_qupath_style_annotations(tmp_path: Path) -> None:
    """No AI, no pixel size, no answers; a MultiPolygon with QuPath's packed colour."""
    from rcm_viewer.cases import CaseStore

    with CaseStore(tmp_path / "cases.sqlite") as store:
        case = store.create_case("", user="r", reader_mode="ai_visible")
        store.add_roi(
            case.case_id,
            {
                "type": "Feature",
                "geometry": {
                    "type": "MultiPolygon",
                    "coordinates": [
                        [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]],
                        [[[20, 20], [30, 20], [30, 30], [20, 30], [20, 20]]],
                    ],
                },
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": "Tumor", "colorRGB": -3670016},
                    "color": -3670016,
                },
            },
            "r",
        )
        store.add_roi(
            case.case_id,
            {
                "type": "Feature",
                "properties": None,
                "geometry": {"type": "Point", "coordinates": [5, 5]},
            },
            "r",
        )
        pdf, sidecar = tmp_path / "r.pdf", tmp_path / "r.json"
        report = export_report(store, case.case_id, pdf, sidecar)
    assert report is not None
    text, reader = _text(pdf)
    assert "No mosaic file is recorded" in text and "No AI result is stored" in text
    assert "Tumor" in text and "unlabelled" in text
    assert unicodedata.normalize("NFKC", "area 200 px²") in text
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    assert data["annotations"][0]["color"] == [200, 0, 0]
    assert data["checklists"] == [] and data["revised_assessment"] is None
    assert len(reader.pages) == 1


def test_a_result_of_an_unverified_model_says_so(tmp_path: Path) -> None:
    """Issue 16: a result whose model was unsigned (or signed by an unknown key) when it
    was made carries the ``unverified_model`` flag, and the report's AI section says so."""
    from report_case_helpers import READER, ai_result

    from rcm_viewer.cases import AIResult
    from rcm_viewer.reports.model import UNVERIFIED_MODEL_NOTE

    fixture = make_case(tmp_path / "case", with_ai=False, commit=False)
    base = ai_result(1024, 768)
    unverified = AIResult.from_probabilities(
        base.model_name,
        base.model_version,
        base.weights_sha256,
        dict(zip(base.class_ids, base.probabilities, strict=True)),
        heatmap=base.heatmap,
        flags=(*base.flags, "unverified_model"),
    )
    fixture.store.save_ai_result(fixture.case_id, unverified, READER)
    fixture.store.commit_initial_assessment(fixture.case_id, READER)
    pdf, sidecar = tmp_path / "r.pdf", tmp_path / "r.json"
    try:
        export_report(fixture.store, fixture.case_id, pdf, sidecar)
    finally:
        fixture.store.close()
    text, _ = _text(pdf)
    assert " ".join(UNVERIFIED_MODEL_NOTE.split()) in text
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    assert data["ai_result"]["unverified_model"] is True
    assert data["ai_result"]["model_trust"].startswith("unverified")
