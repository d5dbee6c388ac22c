"""Signed model bundles (issue 16, finding 4): a seal is a checksum, a signature says who.

Real keys (cryptography's Ed25519), real bundles written by ``save_bundle``, the real
trusted-keys folder under ``RCM_VIEWER_DATA_DIR`` and the real CLI in a subprocess. The
project's private key is not in the repository, so the tests that need "a bundle signed
by the project key" point ``PROJECT_KEY_PATH`` at a key pair they generate.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from pathlib import Path

import inference_testkit as kit
import pytest
from rcm_test_helpers import run_cli

from rcm_viewer.errors import ModelBundleError
from rcm_viewer.inference import classify_paths, list_bundles, load_bundle, signing
from rcm_viewer.inference.manifest import MANIFEST_NAME, manifest_seal
from rcm_viewer.paths import MODELS_DIR
from rcm_viewer.session.ai_view import (
    UNVERIFIED_FLAG,
    stored_from_prediction,
    view_from_prediction,
    view_from_stored,
)


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny sealed bundle (random ResNet-18): the tests copy it before they change it."""
    return kit.random_bundle(tmp_path_factory.mktemp("signing") / "unsigned").path


@pytest.fixture
def bundle_dir(unsigned: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(unsigned, target)
    return target


def _trusted_dir(data_dir: Path) -> Path:
    folder = data_dir / signing.TRUSTED_KEYS_DIR_NAME
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _keys(tmp_path: Path, name: str) -> tuple[Path, Path]:
    return signing.generate_key_pair(tmp_path / "keys" / name)


def _reseal(bundle: Path, **training: object) -> None:
    """What a tamperer does: edit the manifest and recompute its seal."""
    data = json.loads((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    data["training"].update(training)
    data.pop("manifest_sha256")
    data["manifest_sha256"] = manifest_seal(data)
    (bundle / MANIFEST_NAME).write_text(json.dumps(data, indent=2), encoding="utf-8")


def test_keygen_writes_a_private_key_only_the_owner_can_read(tmp_path: Path) -> None:
    result = run_cli("keygen", str(tmp_path / "clinic-a"))
    assert result.returncode == 0, result.stderr
    private, public = tmp_path / "clinic-a.pem", tmp_path / "clinic-a.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    assert signing.pem_key_id(public.read_bytes()) in result.stdout
    again = run_cli("keygen", str(tmp_path / "clinic-a"))  # never overwrites a key
    assert again.returncode != 0 and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_sign_verify_round_trip_with_a_trusted_key(
    bundle_dir: Path, tmp_path: Path, _isolated_user_data: Path
) -> None:
    private, public = _keys(tmp_path, "clinic-a")
    assert load_bundle(bundle_dir).trust == signing.TRUST_UNSIGNED
    signing.sign_bundle(bundle_dir, private)
    record = json.loads((bundle_dir / signing.SIGNATURE_NAME).read_text(encoding="utf-8"))
    assert record["algorithm"] == "ed25519"
    assert record["key_id"] == signing.pem_key_id(public.read_bytes())
    assert len(base64.b64decode(record["signature"])) == 64
    assert "signature" not in json.loads((bundle_dir / MANIFEST_NAME).read_text())
    # signed, but by a key this installation does not know yet
    unknown = load_bundle(bundle_dir)
    assert unknown.trust.startswith(signing.TRUST_UNKNOWN_KEY) and not unknown.verified
    # the trusted-keys folder of the user data folder: its file name is the name shown
    shutil.copy(public, _trusted_dir(_isolated_user_data) / "Clinic A.pub")
    bundle = load_bundle(bundle_dir)
    assert bundle.trust == "signed by Clinic A" and bundle.verified
    assert [e.trust for e in list_bundles(bundle_dir.parent)] == ["signed by Clinic A"]


def test_a_manifest_edited_after_signing_is_refused(
    bundle_dir: Path, tmp_path: Path, _isolated_user_data: Path
) -> None:
    private, public = _keys(tmp_path, "clinic-a")
    shutil.copy(public, _trusted_dir(_isolated_user_data) / "clinic-a.pub")
    signing.sign_bundle(bundle_dir, private)
    _reseal(bundle_dir, synthetic=False)  # the seal is fine again, the signature is not
    with pytest.raises(ModelBundleError) as caught:
        load_bundle(bundle_dir)
    message = str(caught.value)
    assert "does not match its signature by clinic-a" in message and "\n" not in message
    (entry,) = list_bundles(bundle_dir.parent)
    assert entry.manifest is None and "signature" in (entry.problem or "")


def test_a_damaged_signature_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / signing.SIGNATURE_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelBundleError, match="not a valid signature file"):
        load_bundle(bundle_dir)


def test_unsigned_and_unknown_key_bundles_load_as_unverified_and_say_so(
    bundle_dir: Path, tmp_path: Path, mosaic_files: dict
) -> None:
    private, _ = _keys(tmp_path, "stranger")
    unsigned_bundle = load_bundle(bundle_dir)
    signing.sign_bundle(bundle_dir, private)
    stranger = load_bundle(bundle_dir)
    for bundle, reason in ((unsigned_bundle, "unsigned"), (stranger, "unknown key")):
        assert bundle.trust.startswith(f"unverified: {reason}")
        (row,) = classify_paths([mosaic_files["gray_512"]], bundle, device="cpu")
        assert row.ok and row.record()["model_trust"] == bundle.trust
        prediction = row.prediction
        assert prediction is not None and prediction.model_trust == bundle.trust
        assert prediction.summary()["model_trust"] == bundle.trust
        view = view_from_prediction(prediction)
        assert view.model_unverified and view.model_trust == bundle.trust
        stored = stored_from_prediction(prediction)
        assert UNVERIFIED_FLAG in stored.flags
        assert view_from_stored(stored).model_unverified


def test_a_trusted_bundle_leaves_no_unverified_flag(
    bundle_dir: Path, tmp_path: Path, mosaic_files: dict, _isolated_user_data: Path
) -> None:
    private, public = _keys(tmp_path, "clinic-a")
    shutil.copy(public, _trusted_dir(_isolated_user_data) / "clinic-a.pub")
    signing.sign_bundle(bundle_dir, private)
    (row,) = classify_paths([mosaic_files["gray_512"]], load_bundle(bundle_dir), device="cpu")
    assert row.record()["model_trust"] == "signed by clinic-a"
    assert row.prediction is not None
    view = view_from_prediction(row.prediction)
    assert not view.model_unverified
    stored = stored_from_prediction(row.prediction)
    assert UNVERIFIED_FLAG not in stored.flags and not view_from_stored(stored).model_unverified


def test_a_bad_key_file_in_the_trusted_folder_is_skipped(
    bundle_dir: Path, tmp_path: Path, _isolated_user_data: Path
) -> None:
    private, public = _keys(tmp_path, "clinic-a")
    folder = _trusted_dir(_isolated_user_data)
    (folder / "broken.pub").write_text("not a key", encoding="utf-8")
    os.mkfifo(folder / "fifo.pub")  # never read: it would hang the loader
    shutil.copy(public, folder / "clinic-a.pub")
    signing.sign_bundle(bundle_dir, private)
    assert load_bundle(bundle_dir).trust == "signed by clinic-a"


@pytest.fixture
def project_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the project key pair (its private half is kept off the repository)."""
    private, public = _keys(tmp_path, "project")
    monkeypatch.setattr(signing, "PROJECT_KEY_PATH", public)
    return private


def _sign_by_hand(bundle: Path, private: Path) -> None:
    """A signature made without sign-bundle's checks (what a careless or hostile signer
    holding the key can always do)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    record = {
        "algorithm": "ed25519",
        "key_id": signing.key_id(public),
        "signature": base64.b64encode(key.sign((bundle / MANIFEST_NAME).read_bytes())).decode(
            "ascii"
        ),
    }
    (bundle / signing.SIGNATURE_NAME).write_text(json.dumps(record), encoding="utf-8")


def test_the_project_key_cannot_remove_the_demonstration_flag(
    bundle_dir: Path, project_key: Path, mosaic_files: dict
) -> None:
    assert load_bundle(bundle_dir).manifest.synthetic  # the test bundle is a demo bundle
    signing.sign_bundle(bundle_dir, project_key)
    demo = load_bundle(bundle_dir)
    assert demo.trust == signing.TRUST_PROJECT and demo.manifest.synthetic
    _reseal(bundle_dir, synthetic=False)  # the banner would go ...
    with pytest.raises(ModelBundleError, match="demonstration bundles only"):
        signing.sign_bundle(bundle_dir, project_key)  # ... sign-bundle will not vouch
    _sign_by_hand(bundle_dir, project_key)  # and a signature made anyway changes nothing
    bundle = load_bundle(bundle_dir)
    assert bundle.trust == signing.TRUST_PROJECT
    assert bundle.manifest.synthetic and "demonstration" in bundle.manifest.display_name
    (row,) = classify_paths([mosaic_files["gray_512"]], bundle, device="cpu")
    assert row.prediction is not None and row.prediction.model_synthetic
    assert view_from_prediction(row.prediction).synthetic  # the panel's banner shows


def test_the_shipped_project_key_is_trusted_and_the_demo_bundle_loads() -> None:
    project = [k for k in signing.trusted_keys() if k.project]
    assert len(project) == 1 and len(project[0].public_bytes) == 32
    demo = load_bundle(MODELS_DIR / "rcm-demo-resnet34", verify=False)
    assert demo.manifest.synthetic
    if (demo.path / signing.SIGNATURE_NAME).exists():  # signed by the lead after merging
        assert demo.trust == signing.TRUST_PROJECT
    else:
        assert demo.trust == signing.TRUST_UNSIGNED


def test_sign_bundle_command(bundle_dir: Path, tmp_path: Path, _isolated_user_data: Path) -> None:
    private, public = _keys(tmp_path, "clinic-a")
    shutil.copy(public, _trusted_dir(_isolated_user_data) / "clinic-a.pub")
    env = {"RCM_VIEWER_DATA_DIR": str(_isolated_user_data)}
    result = run_cli("sign-bundle", str(bundle_dir), "--key", str(private), env_extra=env)
    assert result.returncode == 0, result.stderr
    assert "signed by clinic-a" in result.stdout
    bad = run_cli("sign-bundle", str(bundle_dir), "--key", str(public), env_extra=env)
    assert bad.returncode != 0 and "not an unencrypted PEM private key" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
