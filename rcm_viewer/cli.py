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
    p.add_argument(
        "--height",
        type=int,
        default=None,
        metavar="PX",
        help="height in pixels when not square (default: --size)",
    )
    p.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    p.add_argument(
        "--pixel-size-um",
        type=float,
        default=None,
        metavar="F",
        help="µm per pixel, 0.5-1.0 (default: drawn per mosaic from 0.5-1.0)",
    )
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="bits per pixel")
    p.add_argument(
        "--classes",
        default="melanoma,bcc,naevus",
        help="comma-separated subset of melanoma,bcc,naevus",
    )
    p.add_argument(
        "--compression",
        choices=("zlib", "jpeg", "lzw", "zstd", "none"),
        default="zlib",
        help="TIFF compression (jpeg only with --bits 8)",
    )
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
            {
                "width": lv.width,
                "height": lv.height,
                "downsample": lv.downsample,
                "stored": lv.stored,
            }
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
        help="classify mosaics or folders of them (melanoma / bcc / naevus probabilities)",
        description=(
            "Classify each mosaic file, or every mosaic in each folder, with a model bundle "
            "(default: the bundled model). One row per file: path, sha256, status (ok or the "
            "one-line reason), width, height, pixel size and its source, model name, version "
            "and weights checksum, one probability per class, top class, seconds. Rows are "
            "appended as each file finishes (the file stays valid if the run is killed). "
            "Exit code 0 when every file was classified, 3 when some could not be (listed "
            "at the end), 2 for bad usage. Reader-assist output, not a diagnosis."
        ),
    )
    p.add_argument(
        "mosaics",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="mosaic file(s) and/or folder(s) of mosaics",
    )
    p.add_argument(
        "--recursive", "-r", action="store_true", help="also look in the folders' subfolders"
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="in folders, only files whose name (or path below the folder) "
        "matches GLOB; may be repeated",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="in folders, leave out files matching GLOB; may be repeated",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="DIR",
        help="model bundle folder (default: the bundled model)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="append rows to FILE.csv (with header), FILE.json (an array) or "
        "FILE.jsonl (one object per line) instead of a table on stdout",
    )
    p.add_argument(
        "--heatmaps",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write each heatmap to DIR: a PNG overlay on the overview and "
        "a float32 TIFF in mosaic coordinates",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep --out's rows and skip files whose content already has an ok "
        "row from the same model weights",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="take only every N-th file of the sorted list, starting with the "
        "I-th (1-based): N machines share a folder, outputs concatenate",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line on stderr")
    p.add_argument(
        "--pixel-size-um",
        type=float,
        default=None,
        metavar="F",
        help="µm per pixel of every mosaic (needed when a file does not record "
        "it; overrides what the files say)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the network runs (default: cuda when available)",
    )
    from rcm_viewer.inference.backends import add_backend_option

    add_backend_option(p)
    p.set_defaults(func=_cmd_classify)


EXIT_SOME_FAILED = 3


class _ClassifyProgress:
    """The progress line on stderr: files done / total, current file, ETA."""

    def __init__(self, scan: object, quiet: bool) -> None:
        import time

        self.scan = scan
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.done = 0
        self.classified_seconds: list[float] = []

    def line(self, index: int, path: Path) -> None:
        import time

        from rcm_viewer.inference.batch import format_eta, printable

        if self.quiet:
            return
        total = getattr(self.scan, "total", None)
        eta = ""
        if total and self.done:
            per_file = (time.monotonic() - self.started) / self.done
            eta = f", ETA {format_eta(per_file * (total - index))}"
        text = f"[{index + 1}/{total or '?'}] {printable(str(path))}{eta}"
        if self.tty:
            print("\r\x1b[K" + text[:200], end="", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr, flush=True)


def _cmd_classify(args: argparse.Namespace) -> int:
    import dataclasses

    from rcm_viewer.inference import default_bundle_dir, load_bundle
    from rcm_viewer.inference.batch import (
        FileScan,
        RowWriter,
        check_output_path,
        classify_paths,
        format_table,
        parse_shard,
        printable,
    )
    from rcm_viewer.mosaic.model import MAX_PIXEL_SIZE_UM, MIN_PIXEL_SIZE_UM

    # Everything that is wrong with the command itself fails here, before any work.
    if args.out is not None:
        check_output_path(args.out)
    elif args.resume:
        raise RcmError("--resume needs --out (the file whose rows it keeps)")
    if args.heatmaps is not None and args.heatmaps.exists() and not args.heatmaps.is_dir():
        raise RcmError(f"--heatmaps {printable(str(args.heatmaps))} is a file, not a folder")
    shard = parse_shard(args.shard) if args.shard is not None else None
    if args.pixel_size_um is not None and not (
        MIN_PIXEL_SIZE_UM <= args.pixel_size_um <= MAX_PIXEL_SIZE_UM
    ):
        raise RcmError(
            f"--pixel-size-um {args.pixel_size_um:g} is not plausible for a "
            f"confocal mosaic ({MIN_PIXEL_SIZE_UM:g}-{MAX_PIXEL_SIZE_UM:g} µm/px)"
        )
    bundle = load_bundle(args.model if args.model is not None else default_bundle_dir())
    manifest = bundle.manifest
    if manifest.synthetic:
        print(
            f"rcm-viewer: note: {manifest.display_name}: a demonstration model; its "
            "probabilities say nothing about real lesions",
            file=sys.stderr,
        )
    if not bundle.verified:
        why = bundle.trust.removeprefix("unverified: ")
        print(
            f"rcm-viewer: note: {manifest.display_name}: unverified model ({why}): no "
            "trusted key signed it, so its origin cannot be checked",
            file=sys.stderr,
        )
    writer = None
    if args.out is not None:
        writer = RowWriter(
            args.out, manifest.class_ids, weights_sha256=manifest.weights_sha256, resume=args.resume
        )
    scan = FileScan(
        args.mosaics,
        recursive=args.recursive,
        include=args.include,
        exclude=args.exclude,
        shard=shard,
    )
    progress = _ClassifyProgress(scan, args.quiet)
    table_rows = []
    failed: list[tuple[Path, str]] = []
    n_rows = n_skipped = 0
    backend = ""
    skip = writer.done.__contains__ if writer is not None and args.resume else None
    try:
        for row in classify_paths(
            scan,
            bundle,
            pixel_size_um=args.pixel_size_um,
            device=args.device,
            backend=args.backend,
            on_file=progress.line,
            skip_sha256=skip,
            heatmaps_dir=args.heatmaps,
        ):
            progress.done += 1
            if row.skipped:
                n_skipped += 1
                continue
            n_rows += 1
            backend = row.backend or backend
            if not row.ok:
                failed.append((row.path, row.status))
            if writer is not None:
                writer.write(row)  # appended, flushed and fsynced: nothing finished is lost
            else:
                table_rows.append(dataclasses.replace(row, prediction=None))
    finally:
        progress.finish()
        if writer is not None:
            writer.close()
    if n_rows and not args.quiet and backend:
        print(f"rcm-viewer: note: backend {backend}", file=sys.stderr)
    if writer is None:
        print(format_table(table_rows, manifest.class_ids))
    else:
        print(
            f"wrote {printable(str(args.out))} ({n_rows} mosaic(s), "
            f"{n_rows - len(failed)} classified"
            + (f", {n_skipped} already there" if n_skipped else "")
            + ")"
        )
    if scan.ignored and not args.quiet:
        print(
            f"rcm-viewer: note: {scan.ignored} file(s) in the folder(s) are not mosaic "
            "images by their name and were left out",
            file=sys.stderr,
        )
    if n_rows == 0 and n_skipped == 0:
        print("rcm-viewer: note: no mosaic files found", file=sys.stderr)
    for path, status in failed:
        said = status if printable(path.name) in status else f"{printable(str(path))}: {status}"
        print(f"rcm-viewer: error: {said}", file=sys.stderr)
    if failed:
        print(
            f"rcm-viewer: {len(failed)} of {n_rows} file(s) could not be classified",
            file=sys.stderr,
        )
        return EXIT_SOME_FAILED
    return EXIT_OK


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
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="REPORT.pdf",
        help="PDF file to write (replaced atomically)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="REPORT.json",
        help="also write the report's content as JSON (with a schema_version)",
    )
    p.add_argument(
        "--anonymise",
        "--anonymize",
        action="store_true",
        help="leave out the patient pseudonym, the mosaic file name and all dates",
    )
    p.add_argument("--no-heatmap", action="store_true", help="leave out the heatmap image")
    p.add_argument("--paper", choices=("a4", "letter"), default="a4", help="paper size")
    p.add_argument(
        "--institution",
        default="",
        metavar="TEXT",
        help="institution line at the top (the window uses its setting)",
    )
    p.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="FILE",
        help="case store file (default: the user's case store)",
    )
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
    options = ReportOptions(
        institution=args.institution,
        anonymise=args.anonymise,
        heatmap=not args.no_heatmap,
        paper=args.paper,
    )
    given = Path(args.case).expanduser()
    with CaseStore(args.db) as store:
        mosaic_path = None
        if given.is_file():
            cases = store.find_by_mosaic_sha256(file_sha256(given))
            if not cases:
                raise ReportError(
                    f"{given.name}: no case in the case store was made from "
                    "this mosaic (open it in the viewer first)"
                )
            case_id = max(cases, key=lambda c: c.updated_at).case_id
            mosaic_path = given.resolve()
        elif "/" in args.case or given.suffix:
            raise ReportError(f"{args.case}: no such mosaic file")
        else:
            case_id = args.case
        report = export_report(
            store, case_id, args.out, args.json, options, mosaic_path=mosaic_path
        )
    if report is None:  # pragma: no cover - the command line never cancels
        return EXIT_BAD_INPUT
    if report.image_note:
        print(f"rcm-viewer: note: {report.image_note}", file=sys.stderr)
    print(f"wrote {args.out}" + (f" and {args.json}" if args.json else ""))
    return EXIT_OK


# --------------------------------------------------------------------------- main

from rcm_viewer.inference.sign_commands import (  # noqa: E402
    add_keygen_parser,
    add_sign_bundle_parser,
)
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
    add_keygen_parser,
    add_sign_bundle_parser,
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
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check this installation (model seals, demo mosaic, classifier, "
        "window, report), print one line, exit 0 or 1",
    )
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
    if args.self_test:
        from rcm_viewer.selftest import main as self_test_main

        return self_test_main()
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
        print(
            f"rcm-viewer: internal error: {type(exc).__name__}: {exc} (details in the log)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
