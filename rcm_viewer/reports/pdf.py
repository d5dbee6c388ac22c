"""Paint a :class:`Report` into a PDF with QtGui only (QPdfWriter, QPainter, QTextDocument).

No widgets, so ``rcm-viewer report`` runs without a display (``QT_QPA_PLATFORM=offscreen``;
a QGuiApplication is made when none exists). The flowing text is one QTextDocument laid
out in pages of the body's size: a long note wraps onto the next page instead of being
cut, and an image or table row that does not fit moves to the next page whole. Each
page is then drawn with a footer (software version, page x of n) painted by hand, which
``QTextDocument.print_`` cannot do. Images are composed here the way the window draws
them: grey display pixels, the heatmap stretched over its span at the panel's opacity
with smooth scaling, annotation outlines, the scale bar in a dark rounded box.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable

from PySide6.QtCore import QMarginsF, QPointF, QRectF, QSizeF, Qt, QUrl
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QGuiApplication,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QPen,
    QPolygonF,
    QTextDocument,
)

from rcm_viewer.reports.display import colormap_lut, format_length
from rcm_viewer.reports.images import array_to_qimage
from rcm_viewer.reports.model import SYNTHETIC_BANNER, Report, ReportImage

DPI = 300
FONT_PT = 9.0
PAGE_SIZES = {"a4": QPageSize.PageSizeId.A4, "letter": QPageSize.PageSizeId.Letter}
#: Width on the page, in CSS px (1/96 inch), of one of the two overview images.
OVERVIEW_CSS_PX = 320
CLOSEUP_CSS_PX = 200
#: Composed images are embedded at most this many pixels a side (about 300 dpi at the size
#: they are printed), so a 16k mosaic's report stays a few MB.
EMBED_MAX_PX = 1200
MIN_COMPOSE_PX = 480
_app: QGuiApplication | None = None


def ensure_gui_app() -> QGuiApplication:
    """The running Q(Gui)Application, or a new offscreen one (fonts need one)."""
    global _app
    app = QGuiApplication.instance()
    if app is not None:
        return app  # type: ignore[return-value]
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _app = QGuiApplication(["rcm-viewer-report"])
    return _app


# --------------------------------------------------------------------------- images


def compose_image(image: ReportImage) -> QImage:
    """The picture as the window would show it: pixels, heatmap, outlines, scale bar."""
    base = array_to_qimage(image.pixels).convertToFormat(QImage.Format.Format_RGB32)
    # a small close-up is enlarged (pixels kept sharp) so outlines and labels are drawn at
    # the same size on paper as on a large one
    k = max(1, math.ceil(MIN_COMPOSE_PX / max(base.width(), base.height(), 1)))
    if k > 1:
        base = base.scaled(
            base.width() * k,
            base.height() * k,
            Qt.AspectRatioMode.IgnoreAspectRatio,
            Qt.TransformationMode.FastTransformation,
        )
    w, h = base.width(), base.height()
    painter = QPainter(base)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.scale(k, k)
    if image.overlay is not None:
        painter.setOpacity(image.overlay_opacity)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(QRectF(*image.overlay_rect), array_to_qimage(image.overlay))
        painter.setOpacity(1.0)
    line = max(1.5, max(w, h) / 220) / k
    for outline in image.outlines:
        color = QColor(*outline.color)
        painter.setPen(QPen(color, line))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        points = [QPointF(x, y) for x, y in outline.points]
        if outline.kind == "polygon":
            painter.drawPolygon(QPolygonF(points))
        elif outline.kind == "line":
            painter.drawPolyline(QPolygonF(points))
        else:
            radius = max(3.0, max(w, h) / 45) / k
            for p in points:
                painter.drawEllipse(p, radius, radius)
                painter.drawLine(QPointF(p.x() - 2 * radius, p.y()), QPointF(p.x() - radius, p.y()))
                painter.drawLine(QPointF(p.x() + radius, p.y()), QPointF(p.x() + 2 * radius, p.y()))
    painter.resetTransform()
    if image.scale_bar_um is not None and image.scale_bar_px is not None:
        _scale_bar(painter, w, h, image.scale_bar_um, image.scale_bar_px * k)
    painter.end()
    if max(w, h) > EMBED_MAX_PX:
        base = base.scaled(
            EMBED_MAX_PX,
            EMBED_MAX_PX,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    return base


def _scale_bar(painter: QPainter, w: int, h: int, length_um: float, length_px: float) -> None:
    font = QFont()
    # relative to the long side: each image is printed at a width set by its long side, so
    # the label comes out the same size on paper in a wide strip and in a square
    font.setPixelSize(max(8, int(max(w, h) / 26)))
    font.setBold(True)
    painter.setFont(font)
    metrics = painter.fontMetrics()
    margin = max(6.0, max(w, h) / 60)
    x1 = w - margin
    x0 = x1 - length_px
    y = h - margin - 2
    label = format_length(length_um)
    box = QRectF(x0 - 6, y - metrics.height() - 8, length_px + 12, metrics.height() + 14)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 150))
    painter.drawRoundedRect(box, 4, 4)
    painter.setPen(
        QPen(
            QColor(255, 255, 255),
            max(2.0, max(w, h) / 200),
            Qt.PenStyle.SolidLine,
            Qt.PenCapStyle.FlatCap,
        )
    )
    painter.drawLine(QPointF(x0, y), QPointF(x1, y))
    painter.setPen(QColor(255, 255, 255))
    text_w = metrics.horizontalAdvance(label)
    painter.drawText(QPointF(x0 + (length_px - text_w) / 2, y - 5), label)


def legend_image(colormap: str, width: int = 512, height: int = 24) -> QImage:
    """The heatmap palette as a bar (opaque, as the window's legend)."""
    import numpy as np

    lut = colormap_lut(colormap)[:, :3]
    index = np.linspace(0, 255, width).round().astype(np.int64)
    row = lut[index]
    return array_to_qimage(np.ascontiguousarray(np.repeat(row[np.newaxis], height, axis=0)))


def bar_image(fraction: float, top: bool, width: int = 400, height: int = 28) -> QImage:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor(235, 235, 235))
    painter = QPainter(image)
    color = QColor(230, 150, 60) if top else QColor(90, 150, 230)
    painter.fillRect(QRectF(0, 0, max(0.0, min(1.0, fraction)) * width, height), QBrush(color))
    painter.end()
    return image


# --------------------------------------------------------------------------- HTML


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _para(text: str) -> str:
    """Escaped text with its line breaks kept (notes are typed with Enter)."""
    return "<br/>".join(_e(line) for line in text.splitlines()) or "&nbsp;"


CSS = """
h1 { font-size: 15pt; margin: 0; }
h2 { font-size: 11pt; margin-top: 10px; margin-bottom: 3px; color: #1d3b5c; }
td, th { padding: 2px 4px; vertical-align: top; }
th { background-color: #dfe6ee; text-align: left; }
.label { color: #555555; }
.banner { background-color: #b3261e; color: #ffffff; font-weight: bold; padding: 4px; }
.note { background-color: #fff2c7; color: #5a4300; padding: 4px; }
.small { font-size: 7.5pt; color: #444444; }
.caption { font-size: 8pt; color: #333333; }
"""


def build_html(report: Report, add_image: Callable[[str, QImage], str]) -> str:
    """The report as HTML for QTextDocument; ``add_image(key, image)`` returns its URL."""
    parts: list[str] = []
    title = _e(report.institution) if report.institution else "rcm-viewer"
    parts.append(
        f"<h1>{title}</h1><p><b>RCM reader report</b>"
        f"{' (anonymised)' if report.options.anonymise else ''}</p>"
    )
    header = [
        ("Case", report.case_id),
        (
            "Patient pseudonym",
            report.pseudonym if report.pseudonym is not None else "removed (anonymised)",
        ),
        ("Lesion site", report.lesion_site),
        ("Acquisition date", report.acquisition_date or "removed (anonymised)"),
        ("Report date", report.report_date or "removed (anonymised)"),
        ("Reader", report.readers),
        (
            "Mosaic",
            report.mosaic_name
            or ("removed (anonymised)" if report.options.anonymise else "not recorded"),
        ),
        ("Pixel size", f"{report.pixel_size_um:g} µm/px" if report.pixel_size_um else "unknown"),
    ]
    rows = []
    for i in range(0, len(header), 2):
        cells = "".join(
            f"<td class='label'>{_e(k)}</td><td><b>{_e(v)}</b></td>" for k, v in header[i : i + 2]
        )
        rows.append(f"<tr>{cells}</tr>")
    parts.append(f"<table width='100%' cellspacing='0'>{''.join(rows)}</table>")
    if report.ai.shown and report.ai.synthetic:
        parts.append(f"<p class='banner'>{_e(SYNTHETIC_BANNER)}</p>")
    if report.image_note:
        parts.append(f"<p class='note'>{_e(report.image_note)}</p>")

    # images
    if report.images:
        parts.append("<h2>Images</h2>")
        cells = []
        for image in report.images:
            url = add_image(image.key, compose_image(image))
            w, h = image.size
            css_w = OVERVIEW_CSS_PX
            css_h = int(round(css_w * h / max(w, 1)))
            caption = _e(image.caption)
            if image.overlay is not None:
                legend = add_image("legend", legend_image(report.options.colormap))
                caption += (
                    f"<br/><img src='{legend}' width='{css_w - 80}' height='8'/><br/>"
                    "<span class='small'>heatmap: low &#8594; high activation "
                    f"({_e(report.options.colormap)}, relative)</span>"
                )
            cells.append(
                f"<td align='center'><img src='{url}' width='{css_w}' "
                f"height='{css_h}'/><br/><span class='caption'>{caption}</span></td>"
            )
        parts.append(f"<table cellspacing='4'><tr>{''.join(cells)}</tr></table>")

    # AI
    parts.append("<h2>AI result</h2>")
    ai = report.ai
    if not ai.shown:
        parts.append(f"<p class='note'>{_e(ai.note)}</p>")
    else:
        when = f", result of {ai.created_at}" if ai.created_at else ""
        parts.append(
            f"<p>Model: <b>{_e(ai.model_name)} {_e(ai.model_version)}</b>{_e(when)}"
            f"<br/><span class='small'>weights sha256 {_e(ai.weights_sha256)}"
            "</span></p>"
        )
        if ai.unverified_note:
            parts.append(f"<p class='note'><b>{_e(ai.unverified_note)}</b></p>")
        rows = []
        for class_id, name, p in ai.probabilities:
            url = add_image(f"bar_{class_id}", bar_image(p, class_id == ai.top_class))
            rows.append(
                f"<tr><td>{_e(name)}</td><td><img src='{url}' width='200' "
                f"height='14'/></td><td align='right'><b>{p * 100:.0f}%</b></td></tr>"
            )
        parts.append(f"<table cellspacing='0'>{''.join(rows)}</table>")
        parts.append(
            "<p class='small'>Calibrated probabilities for the whole mosaic; "
            "the AI is an aid to the reader, not a diagnosis.</p>"
        )

    # assessments
    parts.append("<h2>Reader assessments</h2>")
    initial, revised = report.initial, report.revised
    fields = [
        ("Diagnosis", "diagnosis"),
        ("Confidence", "confidence"),
        ("Management", "management"),
        ("Reader", "reader"),
    ]
    head = "<th>Initial (unaided)</th>" + ("<th>Revised (after AI)</th>" if revised else "")
    rows = [f"<tr><th></th>{head}</tr>"]
    for label, name in fields:
        cells = f"<td>{_e(getattr(initial, name))}</td>"
        if revised:
            cells += f"<td>{_e(getattr(revised, name))}</td>"
        rows.append(f"<tr><td class='label'>{label}</td>{cells}</tr>")
    if initial.committed_at:
        rows.append(
            f"<tr><td class='label'>Initial committed</td><td>"
            f"{_e(initial.committed_at)}</td>{'<td></td>' if revised else ''}</tr>"
        )
    parts.append(f"<table width='100%' cellspacing='0' border='0.5'>{''.join(rows)}</table>")
    for summary, title in (
        (initial, "Notes, initial assessment"),
        (revised, "Notes, revised assessment"),
    ):
        if summary is not None and summary.notes.strip():
            if summary is revised and revised.notes == initial.notes:
                continue
            parts.append(f"<p><b>{title}:</b><br/>{_para(summary.notes)}</p>")

    for section in report.checklists:
        head = "<th>Criterion</th><th>Points</th><th>Initial</th>"
        head += "<th>Revised</th>" if section.revised_score is not None else ""
        rows = [f"<tr>{head}</tr>"]
        for row in section.rows:
            cells = (
                f"<td>{_e(row.label)}</td><td align='center'>{row.points:+d}</td>"
                f"<td>{_e(row.initial)}</td>"
            )
            if section.revised_score is not None:
                cells += f"<td>{_e(row.revised or '')}</td>"
            rows.append(f"<tr>{cells}</tr>")
        score = f"<td colspan='2'><b>{_e(section.score_label)}</b></td>"
        score += f"<td><b>{_e(section.initial_score)}</b></td>"
        if section.revised_score is not None:
            score += f"<td><b>{_e(section.revised_score)}</b></td>"
        rows.append(f"<tr>{score}</tr>")
        parts.append(
            f"<p><b>{_e(section.title)}</b></p>"
            f"<table width='100%' cellspacing='0' border='0.5'>{''.join(rows)}</table>"
        )
    if report.histology:
        parts.append(f"<h2>Histology</h2><p>{_e(report.histology)}</p>")

    # annotations
    parts.append("<h2>Region annotations</h2>")
    if not report.annotations:
        parts.append("<p>No region annotations.</p>")
    else:
        rows = [
            "<tr><th>#</th><th>Label</th><th>Shape</th><th>Criterion</th>"
            "<th>Size</th><th>Note</th></tr>"
        ]
        for i, a in enumerate(report.annotations, start=1):
            swatch = "#{:02x}{:02x}{:02x}".format(*a.color)
            rows.append(
                f"<tr><td><font color='{swatch}'>&#9632;</font> {i}</td>"
                f"<td>{_e(a.label)}</td><td>{_e(a.shape)}</td>"
                f"<td>{_e(a.criterion_label or a.criterion or '')}</td>"
                f"<td>{_e(a.measure)}</td><td>{_e(a.name)}</td></tr>"
            )
        parts.append(f"<table width='100%' cellspacing='0' border='0.5'>{''.join(rows)}</table>")
        if report.closeups:
            cells = []
            for image in report.closeups:
                url = add_image(image.key, compose_image(image))
                w, h = image.size
                scale = CLOSEUP_CSS_PX / max(w, h, 1)
                cells.append(
                    f"<td align='center'><img src='{url}' width='{int(w * scale)}' "
                    f"height='{int(h * scale)}'/><br/><span class='caption'>"
                    f"{_e(image.caption)}</span></td>"
                )
            grid = "".join(
                "<tr>" + "".join(cells[i : i + 3]) + "</tr>" for i in range(0, len(cells), 3)
            )
            parts.append(f"<p><b>Close-ups</b></p><table cellspacing='4'>{grid}</table>")

    parts.append(f"<h2>Intended use</h2><p class='small'>{_e(report.intended_use)}</p>")
    return "<html><body>" + "".join(parts) + "</body></html>"


# --------------------------------------------------------------------------- pages


def render_pdf(report: Report) -> bytes:
    """The report as PDF bytes (the caller writes them atomically)."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    ensure_gui_app()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setResolution(DPI)
    writer.setCreator(f"rcm-viewer {report.software_version}")
    writer.setTitle(f"RCM report, case {report.case_id}")
    writer.setPageLayout(
        QPageLayout(
            QPageSize(PAGE_SIZES[report.options.paper]),
            QPageLayout.Orientation.Portrait,
            QMarginsF(15, 14, 15, 12),
            QPageLayout.Unit.Millimeter,
        )
    )
    document = QTextDocument()
    document.documentLayout().setPaintDevice(writer)
    font = QFont()
    font.setPointSizeF(FONT_PT)
    document.setDefaultFont(font)
    document.setDefaultStyleSheet(CSS)
    document.setDocumentMargin(0)

    def add_image(key: str, image: QImage) -> str:
        url = f"report-image://{key}"
        document.addResource(QTextDocument.ResourceType.ImageResource, QUrl(url), image)
        return url

    document.setHtml(build_html(report, add_image))
    paint = writer.pageLayout().paintRectPixels(DPI)
    footer_h = int(DPI * 0.22)
    body = QSizeF(paint.width(), paint.height() - footer_h)
    document.setPageSize(body)
    pages = max(1, document.pageCount())
    painter = QPainter(writer)
    footer_font = QFont()
    footer_font.setPointSizeF(7.0)
    try:
        for page in range(pages):
            if page:
                writer.newPage()
            painter.save()
            painter.translate(0, -page * body.height())
            document.drawContents(
                painter, QRectF(0, page * body.height(), body.width(), body.height())
            )
            painter.restore()
            painter.setFont(footer_font)
            painter.setPen(QColor(90, 90, 90))
            y = paint.height() - footer_h * 0.25
            left = (
                f"rcm-viewer {report.software_version} · case {report.case_id} · "
                "reader-assist tool, not a diagnostic device"
            )
            painter.drawText(QPointF(0, y), left)
            right = f"page {page + 1} of {pages}"
            width = painter.fontMetrics().horizontalAdvance(right)
            painter.drawText(QPointF(paint.width() - width, y), right)
    finally:
        painter.end()
    buffer.close()
    return bytes(data.data())
