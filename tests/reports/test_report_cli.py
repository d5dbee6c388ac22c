"""``rcm-viewer report`` in a real subprocess: same content as export_report, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from pypdf import PdfReader
from rcm_test_helpers import run_cli

from rcm_viewer.reports.export import export_report, report_dict
from rcm_viewer.reports.model import ReportOptions


def _comparable(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data["header"]["report_date"] = None  # the minute the report was made
    return data


def test_cli_by_case_id_matches_the_in_process_export(case, tmp_path: Path) -> None:
    pdf, sidecar = tmp_path / "cli.pdf", tmp_path / "cli.json"
    case.store.close()
    result = run_cli(
        "report",
        case.case_id,
        "--out",
        str(pdf),
        "--json",
        str(sidecar),
        "--institution",
        "Skin Clinic Nord",
        "--db",
        str(case.store.path),
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {pdf}" in result.stdout
    assert len(PdfReader(str(pdf)).pages) >= 1
    from rcm_viewer.cases import CaseStore

    with CaseStore(case.store.path) as store:  # what the window's worker calls
        report = export_report(
            store,
            case.case_id,
            tmp_path / "gui.pdf",
            None,
            ReportOptions(institution="Skin Clinic Nord"),
        )
    cli = json.loads(sidecar.read_text(encoding="utf-8"))
    assert _comparable(cli) == _comparable(report_dict(report))


def test_cli_by_mosaic_file_even_after_a_move(case, tmp_path: Path) -> None:
    moved = tmp_path / "renamed.tif"
    case.mosaic.rename(moved)
    case.store.close()
    pdf, sidecar = tmp_path / "r.pdf", tmp_path / "r.json"
    result = run_cli(
        "report",
        str(moved),
        "--out",
        str(pdf),
        "--json",
        str(sidecar),
        "--anonymise",
        "--no-heatmap",
        "--paper",
        "letter",
        "--db",
        str(case.store.path),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    assert data["header"]["case_id"] == case.case_id
    assert data["header"]["patient_pseudonym"] is None
    assert data["options"] == {
        "anonymised": True,
        "heatmap": False,
        "paper": "letter",
        "colormap": "Inferno",
        "opacity": 0.45,
    }
    assert [i["key"] for i in data["images"]] == ["overview"]  # the moved file was found


def test_cli_bad_input_is_one_line_and_exit_2(case, tmp_path: Path) -> None:
    case.store.close()
    db = str(case.store.path)
    other = tmp_path / "other.tif"
    other.write_bytes(b"II*\x00 not a case")
    cases = [
        (("NO-SUCH-CASE", "--out", str(tmp_path / "a.pdf")), "NO-SUCH-CASE"),
        ((case.case_id, "--out", str(tmp_path / "a.txt")), "must end in .pdf"),
        ((case.case_id, "--out", str(tmp_path / "missing" / "a.pdf")), "does not exist"),
        ((str(other), "--out", str(tmp_path / "a.pdf")), "no case in the case store"),
        ((str(tmp_path / "gone.tif"), "--out", str(tmp_path / "a.pdf")), "no such mosaic"),
    ]
    for args, expected in cases:
        result = run_cli("report", *args, "--db", db)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, result.stderr)
        assert lines[0].startswith("rcm-viewer: error:")
    assert not list(tmp_path.glob("a.*"))


def test_reports_never_load_widgets_and_the_data_part_no_qt(case, tmp_path: Path) -> None:
    """A fresh interpreter without a display: the model is Qt-free, rendering uses QtGui only."""
    import subprocess
    import sys

    case.store.close()
    code = (
        "import sys\n"
        "import rcm_viewer.reports.display, rcm_viewer.reports.model, rcm_viewer.reports.export\n"
        "assert not [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'torch'))]\n"
        "from rcm_viewer.cases import CaseStore\n"
        "from rcm_viewer.reports.export import export_report\n"
        f"store = CaseStore({str(case.store.path)!r})\n"
        f"export_report(store, {case.case_id!r}, {str(tmp_path / 'r.pdf')!r})\n"
        "bad = [m for m in sys.modules if m.startswith(('PySide6.QtWidgets', 'pyqtgraph'))]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    env = {
        k: v
        for k, v in __import__("os").environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
