"""Command-line entry point: ``rcm-viewer <command> ...``.

Every subcommand prints one clear line on stderr and exits non-zero on bad
input; full tracebacks go to the log file only. ``rcm-viewer`` with no command
starts the desktop application (that is what a double-click does).

Exit codes: 0 success, 2 bad input or usage, 1 unexpected internal error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rcm_viewer import __version__
from rcm_viewer.errors import RcmError

log = logging.getLogger("rcm_viewer")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2


def _setup_logging(verbose: bool) -> Path | None:
    """Log to a rotating file in the user log folder; to stderr too when verbose."""
    from logging.handlers import RotatingFileHandler

    from rcm_viewer.paths import user_log_dir

    root = logging.getLogger("rcm_viewer")
    root.setLevel(logging.DEBUG)
    log_path: Path | None = None
    if not root.handlers:
        try:
            log_path = user_log_dir() / "rcm-viewer.log"
            handler = RotatingFileHandler(log_path, maxBytes=2_000_000, backupCount=3)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            root.addHandler(handler)
        except (OSError, RcmError):
            log_path = None  # a read-only home must not stop the program
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(logging.INFO)
        root.addHandler(stream)
    return log_path


# --------------------------------------------------------------------------- synth


def _add_synth_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write a class-per-folder dataset of synthetic RCM-like mosaics",
        description=(
            "Write OUT_DIR/melanoma/, OUT_DIR/bcc/ and OUT_DIR/naevus/ with N procedurally "
            "generated RCM-like mosaics each (tiled, pyramidal TIFF with pixel size and class "
            "in the metadata). Synthetic images: for testing and demonstration only."
        ),
    )
    p.add_argument("out_dir", type=Path, help="output folder (created if missing)")
    p.add_argument("--per-class", type=int, default=5, metavar="N", help="mosaics per class")
    p.add_argument("--size", type=int, default=2048, metavar="PX", help="side length in pixels")
    p.add_argument("--height", type=int, default=None, metavar="PX",
                   help="height in pixels when not square (default: --size)")
    p.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    p.add_argument("--pixel-size-um", type=float, default=None, metavar="F",
                   help="µm per pixel, 0.5-1.0 (default: drawn per mosaic from 0.5-1.0)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="bits per pixel")
    p.add_argument("--classes", default="melanoma,bcc,naevus",
                   help="comma-separated subset of melanoma,bcc,naevus")
    p.add_argument("--compression", choices=("zlib", "jpeg", "lzw", "zstd", "none"),
                   default="zlib", help="TIFF compression (jpeg only with --bits 8)")
    p.add_argument("--quiet", action="store_true", help="no per-file progress lines")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    from rcm_viewer.synthetic import write_dataset

    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())

    def progress(done: int, total: int, path: Path) -> None:
        if not args.quiet:
            print(f"[{done}/{total}] {path}", flush=True)

    write_dataset(
        args.out_dir,
        per_class=args.per_class,
        width=args.size,
        height=args.height or args.size,
        seed=args.seed,
        pixel_size_um=args.pixel_size_um,
        bits=args.bits,
        classes=classes,
        compression=None if args.compression == "none" else args.compression,
        progress=progress,
    )
    return EXIT_OK


# --------------------------------------------------------------------------- info


def _add_info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe a mosaic file (format, size, levels, pixel size)",
        description=(
            "Read the headers of a mosaic (TIFF, OME-TIFF, PNG, JPEG or BMP) and print its "
            "format, size, pixel type, resolution levels, pages, pixel size in µm (and where "
            "it came from) and the lesion class when the file records one. No pixels are "
            "decoded. Exit code 2 when the file cannot be opened."
        ),
    )
    p.add_argument("path", type=Path, help="mosaic file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    import json

    from rcm_viewer.mosaic import open_mosaic

    with open_mosaic(args.path) as mosaic:
        info = mosaic.info
        planned = mosaic.planned_levels
    if args.json:
        data = info.to_dict()
        data["planned_levels"] = [
            {"width": lv.width, "height": lv.height, "downsample": lv.downsample,
             "stored": lv.stored}
            for lv in planned
        ]
        print(json.dumps(data, indent=2))
        return EXIT_OK
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "µ".encode(encoding)
        um = "µm"
    except (UnicodeEncodeError, LookupError):
        um = "um"
    colour = "RGB (shown as-is)" if info.is_rgb else "grayscale"
    levels = ", ".join(f"{lv.width}x{lv.height}" for lv in info.levels)
    built = len(planned) - len(info.levels)
    lines = [
        f"file:        {info.path}",
        f"format:      {info.format_description}",
        f"size:        {info.width} x {info.height} px",
        f"pixel type:  {info.dtype}, {info.channels} channel(s), {colour}",
        f"levels:      {len(info.levels)} stored ({levels})"
        + (f"; the viewer builds {built} more" if built else ""),
        f"pages:       {info.pages}",
    ]
    if info.pixel_map is not None:
        lines.append(f"pixel map:   {info.pixel_map.describe()}")
    if info.pixel_size_um is not None:
        fov = info.field_of_view_mm
        lines.append(
            f"pixel size:  {info.pixel_size_um:.4g} {um}/px (from {info.pixel_size_source})"
        )
        if fov:
            lines.append(f"field:       {fov[0]:.2f} x {fov[1]:.2f} mm")
    else:
        lines.append("pixel size:  unknown (set it in the viewer; it is remembered per file)")
    if info.lesion_class:
        lines.append(f"class:       {info.lesion_class}")
    for warning in info.warnings:
        lines.append(f"note:        {warning}")
    text = "\n".join(lines)
    print(text.replace("µm", um) if um != "µm" else text)
    return EXIT_OK


# --------------------------------------------------------------------------- classify


def _add_classify_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="classify mosaics with the ResNet (melanoma / bcc / naevus probabilities)",
        description=(
            "Classify each MOSAIC with a model bundle (default: the bundled model) and print "
            "one row per file: status, top class, one calibrated probability per class, "
            "model name, version and weights checksum, seconds. A file that cannot be "
            "classified gets its row with the one-line reason and the others go on. Exit "
            "code 0 when every file was classified, 2 otherwise. Reader-assist output, not a "
            "diagnosis."
        ),
    )
    p.add_argument("mosaics", nargs="+", type=Path, metavar="MOSAIC", help="mosaic file(s)")
    p.add_argument("--model", type=Path, default=None, metavar="DIR",
                   help="model bundle folder (default: the bundled model)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write rows to FILE.json (list of objects) or FILE.csv (with header) "
                        "instead of a table on stdout")
    p.add_argument("--pixel-size-um", type=float, default=None, metavar="F",
                   help="µm per pixel of every MOSAIC (needed when a file does not record it)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs (default: cuda when available)")
    from rcm_viewer.inference.backends import add_backend_option

    add_backend_option(p)
    p.set_defaults(func=_cmd_classify)


def _cmd_classify(args: argparse.Namespace) -> int:
    from rcm_viewer.inference import (
        classify_paths,
        default_bundle_dir,
        format_table,
        load_bundle,
        write_rows,
    )

    if args.out is not None and args.out.suffix.lower() not in (".json", ".csv"):
        raise RcmError(f"{args.out.name}: --out must end in .json or .csv")
    bundle = load_bundle(args.model if args.model is not None else default_bundle_dir())
    manifest = bundle.manifest
    if manifest.synthetic:
        print(f"rcm-viewer: note: {manifest.display_name}: a demonstration model; its "
              "probabilities say nothing about real lesions", file=sys.stderr)
    rows = []
    for row in classify_paths(args.mosaics, bundle, pixel_size_um=args.pixel_size_um,
                              device=args.device, backend=args.backend):
        rows.append(row)
        if not row.ok:
            said = row.status if row.path.name in row.status else f"{row.path}: {row.status}"
            print(f"rcm-viewer: error: {said}", file=sys.stderr)
        if args.out is not None:
            write_rows(rows, args.out, manifest.class_ids)  # after each file: nothing lost
    if rows:
        print(f"rcm-viewer: note: backend {rows[0].backend}", file=sys.stderr)
    if args.out is None:
        print(format_table(rows, manifest.class_ids))
    else:
        ok = sum(r.ok for r in rows)
        print(f"wrote {args.out} ({len(rows)} mosaic(s), {ok} classified)")
    return EXIT_OK if all(r.ok for r in rows) else EXIT_BAD_INPUT


# --------------------------------------------------------------------------- export-onnx


def _add_export_onnx_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export a model bundle's network to ONNX (for the OpenVINO backend)",
        description=(
            "Write BUNDLE_DIR/network.onnx (outputs: logits and the last block's features, "
            "weights stored as float16) and seal it in the bundle's manifest by its "
            "sha256, like the weights. Needs PyTorch. Does nothing when the bundle already "
            "has an intact export."
        ),
    )
    p.add_argument("bundle_dir", type=Path, metavar="BUNDLE_DIR", help="model bundle folder")
    p.set_defaults(func=_cmd_export_onnx)


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from rcm_viewer.inference.bundle import export_onnx

    bundle, written = export_onnx(args.bundle_dir)
    path = bundle.onnx_path
    if written and path is not None:
        size = path.stat().st_size / 1024**2
        print(f"wrote {path} ({size:.1f} MB, sha256 {bundle.manifest.onnx_sha256})")
    else:
        print(f"{path} is already exported and intact")
    return EXIT_OK


# --------------------------------------------------------------------------- gui


def _add_gui_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="start the desktop application (the default)")
    p.add_argument("paths", nargs="*", type=Path, help="mosaic(s) to open")
    p.add_argument("--demo", action="store_true", help="open the bundled demo mosaic")
    p.set_defaults(func=_cmd_gui)


def _cmd_gui(args: argparse.Namespace) -> int:
    from rcm_viewer.ui.app import run_app

    paths = list(getattr(args, "paths", []) or [])
    if getattr(args, "demo", False):
        from rcm_viewer.paths import demo_mosaic

        paths.insert(0, demo_mosaic())
    return run_app(paths)


# --------------------------------------------------------------------------- report


def _add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write the PDF report (and JSON data) of a stored case",
        description=(
            "Write the report of one case from the case store: header, mosaic overview with "
            "the region annotations and a scale bar, the heatmap, close-ups of each "
            "annotation, the AI result (only once the unaided assessment is committed, in "
            "reader-first mode), both assessments with their checklist scores. CASE is a "
            "case id or a mosaic file (found by its content, even if it was moved)."
        ),
    )
    p.add_argument("case", metavar="CASE_ID_OR_MOSAIC", help="case id, or the mosaic file")
    p.add_argument("--out", type=Path, required=True, metavar="REPORT.pdf",
                   help="PDF file to write (replaced atomically)")
    p.add_argument("--json", type=Path, default=None, metavar="REPORT.json",
                   help="also write the report's content as JSON (with a schema_version)")
    p.add_argument("--anonymise", "--anonymize", action="store_true",
                   help="leave out the patient pseudonym, the mosaic file name and all dates")
    p.add_argument("--no-heatmap", action="store_true", help="leave out the heatmap image")
    p.add_argument("--paper", choices=("a4", "letter"), default="a4", help="paper size")
    p.add_argument("--institution", default="", metavar="TEXT",
                   help="institution line at the top (the window uses its setting)")
    p.add_argument("--db", type=Path, default=None, metavar="FILE",
                   help="case store file (default: the user's case store)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from rcm_viewer.cases import CaseStore, file_sha256
    from rcm_viewer.errors import ReportError
    from rcm_viewer.reports.export import export_report
    from rcm_viewer.reports.model import ReportOptions

    if args.out.suffix.lower() != ".pdf":
        raise ReportError(f"{args.out.name}: --out must end in .pdf")
    if args.json is not None and args.json.suffix.lower() != ".json":
        raise ReportError(f"{args.json.name}: --json must end in .json")
    options = ReportOptions(institution=args.institution, anonymise=args.anonymise,
                            heatmap=not args.no_heatmap, paper=args.paper)
    given = Path(args.case).expanduser()
    with CaseStore(args.db) as store:
        mosaic_path = None
        if given.is_file():
            cases = store.find_by_mosaic_sha256(file_sha256(given))
            if not cases:
                raise ReportError(f"{given.name}: no case in the case store was made from "
                                  "this mosaic (open it in the viewer first)")
            case_id = max(cases, key=lambda c: c.updated_at).case_id
            mosaic_path = given.resolve()
        elif "/" in args.case or given.suffix:
            raise ReportError(f"{args.case}: no such mosaic file")
        else:
            case_id = args.case
        report = export_report(store, case_id, args.out, args.json, options,
                               mosaic_path=mosaic_path)
    if report is None:  # pragma: no cover - the command line never cancels
        return EXIT_BAD_INPUT
    if report.image_note:
        print(f"rcm-viewer: note: {report.image_note}", file=sys.stderr)
    print(f"wrote {args.out}" + (f" and {args.json}" if args.json else ""))
    return EXIT_OK


# --------------------------------------------------------------------------- main

from rcm_viewer.training.commands import (  # noqa: E402
    add_evaluate_parser,
    add_fit_ood_parser,
    add_train_parser,
)

_PARSER_BUILDERS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_gui_parser,
    _add_synth_parser,
    _add_info_parser,
    _add_classify_parser,
    _add_report_parser,
    _add_export_onnx_parser,
    add_train_parser,
    add_evaluate_parser,
    add_fit_ood_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rcm-viewer",
        description=(
            "Reader-assist viewer for reflectance confocal microscopy (RCM) mosaics of the "
            "skin. Not a diagnostic device. Without a command, starts the desktop application."
        ),
    )
    parser.add_argument("--version", action="version", version=f"rcm-viewer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSER_BUILDERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # -v/--verbose is accepted anywhere, e.g. `rcm-viewer gui --demo -v`
    verbose = any(a in ("-v", "--verbose") for a in argv)
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    args = parser.parse_args(argv)
    args.verbose = verbose
    from rcm_viewer.paths import restrict_new_files

    restrict_new_files()  # case data, settings, logs and backups: 0600 / 0700
    _setup_logging(args.verbose)
    if args.command is None:
        args.paths, args.demo = [], False
        args.func = _cmd_gui
    try:
        return int(args.func(args) or 0)
    except RcmError as exc:
        log.info("%s failed: %s", args.command, exc, exc_info=True)
        print(f"rcm-viewer: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("rcm-viewer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rcm-viewer info x --json | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # last resort: one line for the user, traceback in the log
        log.exception("unexpected error in %s", args.command)
        print(f"rcm-viewer: internal error: {type(exc).__name__}: {exc} (details in the log)",
              file=sys.stderr)
        return EXIT_INTERNAL
