"""``rcm-viewer keygen`` and ``rcm-viewer sign-bundle``: argument parsing and output.

Built here (like training/commands.py) so ``cli.py`` only lists the two parsers. The
work is in signing.py; nothing here imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_OK = 0


def add_keygen_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keygen",
        help="create an Ed25519 key pair for signing model bundles",
        description=(
            "Write OUT_PREFIX.pem (the private key, readable by you only: keep it off shared "
            "folders and out of version control) and OUT_PREFIX.pub (the public key: copy "
            "it into the trusted-keys folder of the user data folder on each workstation "
            "that should trust bundles you sign; its file name is the name shown)."
        ),
    )
    p.add_argument(
        "out_prefix",
        type=Path,
        metavar="OUT_PREFIX",
        help="path without extension, e.g. keys/clinic-a",
    )
    p.set_defaults(func=cmd_keygen)


def cmd_keygen(args: argparse.Namespace) -> int:
    from rcm_viewer.inference.signing import generate_key_pair, pem_key_id, trusted_keys_dir

    private_path, public_path = generate_key_pair(args.out_prefix)
    ident = pem_key_id(public_path.read_bytes())
    print(f"wrote {private_path} (private key, mode 0600) and {public_path} (key id {ident})")
    print(f"to trust it here: copy {public_path.name} into {trusted_keys_dir()}")
    return EXIT_OK


def add_sign_bundle_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sign-bundle",
        help="sign a model bundle's manifest with an Ed25519 private key",
        description=(
            "Check the bundle (seal and checksums of every file), then write "
            "BUNDLE_DIR/signature.json: an Ed25519 signature of the exact bytes of "
            "manifest.json, which seals every other file by sha256. Any later change to "
            "the manifest makes the app refuse the bundle; rewriting the manifest "
            "(export-onnx, fit-ood) removes the signature, so sign again afterwards."
        ),
    )
    p.add_argument("bundle_dir", type=Path, metavar="BUNDLE_DIR", help="model bundle folder")
    p.add_argument(
        "--key",
        type=Path,
        required=True,
        metavar="PRIVATE_KEY.pem",
        help="private key written by rcm-viewer keygen",
    )
    p.set_defaults(func=cmd_sign_bundle)


def cmd_sign_bundle(args: argparse.Namespace) -> int:
    from rcm_viewer.inference.bundle import load_bundle
    from rcm_viewer.inference.signing import sign_bundle

    path = sign_bundle(args.bundle_dir, args.key)
    bundle = load_bundle(args.bundle_dir, verify=False)
    print(f"wrote {path}; this installation sees it as: {bundle.trust}")
    return EXIT_OK
