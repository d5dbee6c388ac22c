"""``rcm-viewer train`` and ``rcm-viewer evaluate``: argument parsing (torch-free).

The parsers are built here so ``cli.py`` only lists them; torch is imported when a
command runs, not when ``rcm-viewer --help`` is printed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rcm_viewer.inference.manifest import ARCHITECTURES

EXIT_OK = 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier bundle from a class-per-folder data set",
        description=(
            "Train a ResNet on DATA_DIR/<class>/ mosaics the published way (random tissue "
            "crops at the model's µm/px, affine, brightness/contrast and flip augmentation, "
            "class-weighted loss, early stopping on the mosaic-level validation loss, "
            "temperature scaling) and export a model bundle. Several GPUs/processes: "
            "torchrun --nproc_per_node=N -m rcm_viewer train ..."
        ),
    )
    p.add_argument("data_dir", type=Path, help="folder with one sub-folder per class")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="bundle folder to write, e.g. models/clinic-resnet34",
    )
    p.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default="resnet34",
        help="ResNet depth (default resnet34, as published)",
    )
    p.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        metavar="PATH",
        help="local torchvision ImageNet state_dict (never downloaded); "
        "default: train from scratch",
    )
    p.add_argument(
        "--tile-px",
        type=int,
        default=128,
        metavar="N",
        help="tile side in model pixels, multiple of 32 (default 128)",
    )
    p.add_argument(
        "--pixel-size-um",
        type=float,
        default=1.0,
        metavar="F",
        help="µm per model pixel (default 1.0)",
    )
    p.add_argument("--epochs", type=int, default=15, metavar="N")
    p.add_argument(
        "--crops-per-mosaic",
        type=int,
        default=8,
        metavar="N",
        help="random crops of each training mosaic per epoch (default 8)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        metavar="N",
        help="global batch size (all processes together)",
    )
    p.add_argument(
        "--accumulation-steps",
        type=int,
        default=1,
        metavar="N",
        help="split each batch into N parts run one after the other (less memory)",
    )
    p.add_argument(
        "--patients",
        type=Path,
        default=None,
        metavar="CSV",
        help="CSV path,patient_id: no patient in two splits",
    )
    p.add_argument("--split", default="70/15/15", help="train/validation/test percentages")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--fp16", action="store_true", help="store the exported weights in float16")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--whole-mosaic",
        action="store_true",
        help="published baseline: each whole mosaic resized to one input image",
    )
    p.add_argument("--learning-rate", type=float, default=1e-3, metavar="F")
    p.add_argument(
        "--patience",
        type=int,
        default=4,
        metavar="N",
        help="stop after N epochs without a better validation loss",
    )
    p.add_argument(
        "--workers", type=int, default=2, metavar="N", help="data-loading processes (default 2)"
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="checkpoints and split (default: OUT.training next to OUT)",
    )
    p.add_argument("--name", default=None, help="model name (default: the --out folder name)")
    p.add_argument("--version", default="1.0")
    p.add_argument(
        "--synthetic-data",
        action="store_true",
        default=None,
        help="declare the data synthetic (detected for `rcm-viewer synth` folders)",
    )
    p.add_argument(
        "--sign-key",
        type=Path,
        default=None,
        metavar="PRIVATE_KEY.pem",
        help="sign the exported bundle with this key (rcm-viewer keygen)",
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from rcm_viewer.inference.signing import check_signing_key, sign_bundle
    from rcm_viewer.training.trainer import TrainingConfig, train

    if args.sign_key is not None:
        check_signing_key(args.sign_key)  # a bad key fails now, not after the training
    config = TrainingConfig(
        data_dir=args.data_dir,
        out_dir=args.out,
        architecture=args.arch,
        pretrained=args.pretrained,
        tile_px=args.tile_px,
        pixel_size_um=args.pixel_size_um,
        epochs=args.epochs,
        crops_per_mosaic=args.crops_per_mosaic,
        batch_size=args.batch_size,
        patients_csv=args.patients,
        split=args.split,
        seed=args.seed,
        resume=args.resume,
        fp16=args.fp16,
        device=args.device,
        whole_mosaic=args.whole_mosaic,
        learning_rate=args.learning_rate,
        patience=args.patience,
        workers=args.workers,
        work_dir=args.work_dir,
        accumulation_steps=args.accumulation_steps,
        name=args.name,
        version=args.version,
        synthetic=args.synthetic_data,
        command="rcm-viewer " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    train(config, progress=lambda line: print(line, flush=True))
    if args.sign_key is not None:
        print(f"signed: {sign_bundle(args.out, args.sign_key)}", flush=True)
    return EXIT_OK


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model bundle on a data folder (metrics, plots)",
        description=(
            "Classify each mosaic of DATA_DIR (the saved test split, or all) with the app's "
            "own classify path and write metrics.json, metrics.md, predictions.csv and ROC, "
            "reliability and confusion-matrix plots."
        ),
    )
    p.add_argument("data_dir", type=Path, help="folder with one sub-folder per class")
    p.add_argument("--model", type=Path, required=True, metavar="DIR", help="model bundle")
    p.add_argument(
        "--split",
        choices=("test", "all"),
        default="test",
        help="the bundle's saved test split, or every mosaic of DATA_DIR",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="report folder (default evaluation-<model>-<split>)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    from rcm_viewer.inference.backends import add_backend_option

    add_backend_option(p)
    p.add_argument(
        "--foreign",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also report the out-of-distribution rate on the images of DIR "
        "(repeatable; e.g. another device, body site or modality)",
    )
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rcm_viewer.training.evaluation import evaluate

    evaluate(
        args.data_dir,
        args.model,
        split=args.split,
        out_dir=args.out,
        device=args.device,
        progress=lambda line: print(line, flush=True),
        backend=args.backend,
        foreign=args.foreign,
    )
    return EXIT_OK


def add_fit_ood_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-ood",
        help="fit a bundle's out-of-distribution statistics on in-distribution mosaics",
        description=(
            "Give an existing bundle an out-of-distribution check: classify the mosaics of "
            "DATA_DIR/<class>/ (data like the training data, not used in training), fit "
            "class-conditional Gaussians to half of them (Mahalanobis distance of the pooled "
            "layer-4 features), set the thresholds at the 99th percentile of the other half, "
            "and write ood.npz into the bundle, sealed in its manifest. The weights are not "
            "touched."
        ),
    )
    p.add_argument("bundle_dir", type=Path, help="model bundle folder")
    p.add_argument("data_dir", type=Path, help="folder with one sub-folder per class")
    p.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="share of each class kept apart for the thresholds (default 0.5)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.set_defaults(func=cmd_fit_ood)


def cmd_fit_ood(args: argparse.Namespace) -> int:
    from rcm_viewer.training.ood_fit import fit_bundle_from_folder

    fit_bundle_from_folder(
        args.bundle_dir,
        args.data_dir,
        heldout_fraction=args.heldout_fraction,
        seed=args.seed,
        device=args.device,
        progress=lambda line: print(line, flush=True),
    )
    return EXIT_OK
