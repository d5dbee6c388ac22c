"""Build the rcm-viewer desktop app in one command: ``python installer/build.py [--flavour F]``.

Steps: render the icons from installer/icons/rcm-viewer.svg (PNG, and .ico/.icns for the
other platforms), run PyInstaller on installer/rcm-viewer.spec for the flavour (``small``
without torch, ``full`` with it), then on Linux pack the one-folder app as a .tar.gz and a
.deb (dpkg-deb: /opt/rcm-viewer, /usr/bin/rcm-viewer, a .desktop entry registered for
TIFF/BMP/PNG/JPEG, hicolor icons). It prints one JSON object (build seconds, folder size,
compressed sizes, paths) and writes it next to the outputs. Everything lands under
installer/build/ and installer/dist/ (ignored by git).

One script rather than a Makefile so the same command runs on Linux, Windows and macOS CI
(installer/ci/build-installers.yml); the platform-specific packing (Inno Setup, the .app's
dmg) is left to CI, where the tools exist.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = HERE / "build"
DIST = HERE / "dist"
ICON_SVG = HERE / "icons" / "rcm-viewer.svg"
MIME_TYPES = ("image/tiff", "image/bmp", "image/png", "image/jpeg")
#: Runtime libraries of Qt's xcb platform plugin that a minimal Debian/Ubuntu lacks.
DEB_DEPENDS = (
    "libxcb-icccm4, libxcb-keysyms1, libxcb-xinerama0, libxcb-cursor0, libxkbcommon-x11-0, "
    "libegl1, libgl1, libfontconfig1, libdbus-1-3"
)


def version() -> str:
    sys.path.insert(0, str(ROOT))
    from rcm_viewer import __version__

    return __version__


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def render_icons(out: Path) -> dict[str, Path]:
    """PNG (256 px) from the SVG with Qt's renderer; .ico and .icns from the PNG (Pillow)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    out.mkdir(parents=True, exist_ok=True)
    _app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 (Qt needs it)
    image = QImage(256, 256, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    QSvgRenderer(str(ICON_SVG)).render(painter)
    painter.end()
    icons = {"png": out / "rcm-viewer.png", "svg": ICON_SVG}
    image.save(str(icons["png"]))
    from PIL import Image

    with Image.open(icons["png"]) as png:
        png.save(out / "rcm-viewer.ico", sizes=[(16, 16), (32, 32), (48, 48), (256, 256)])
        icons["ico"] = out / "rcm-viewer.ico"
        try:
            png.save(out / "rcm-viewer.icns")
            icons["icns"] = out / "rcm-viewer.icns"
        except (OSError, ValueError, KeyError):  # Pillow without icns writing: PNG is used
            pass
    return icons


def run_pyinstaller(flavour: str, icon_dir: Path) -> Path:
    env = dict(os.environ, RCM_FLAVOUR=flavour, RCM_ICON_DIR=str(icon_dir))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(DIST / flavour),
            "--workpath",
            str(BUILD / flavour),
            str(HERE / "rcm-viewer.spec"),
        ],
        check=True,
        cwd=ROOT,
        env=env,
    )
    app = DIST / flavour / ("rcm-viewer.app" if sys.platform == "darwin" else "rcm-viewer")
    if not app.exists():
        raise SystemExit(f"PyInstaller finished but {app} is missing")
    return app


def make_tarball(app: Path, flavour: str, ver: str) -> Path:
    out = DIST / f"rcm-viewer-{ver}-{flavour}-linux-x86_64.tar.gz"
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(app, arcname=f"rcm-viewer-{ver}")
    return out


def desktop_entry() -> str:
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            "Name=rcm-viewer",
            "GenericName=RCM mosaic viewer",
            "Comment=Reader-assist viewer for reflectance confocal microscopy skin mosaics",
            "Exec=/usr/bin/rcm-viewer %f",
            "Icon=rcm-viewer",
            "Terminal=false",
            "Categories=Graphics;Viewer;Science;MedicalSoftware;",
            "MimeType=" + ";".join(MIME_TYPES) + ";",
            "StartupWMClass=rcm-viewer",
            "",
        ]
    )


def make_deb(app: Path, flavour: str, ver: str, icons: dict[str, Path]) -> Path:
    """A .deb of the one-folder app; ``apt install ./x.deb`` pulls the Qt xcb libraries."""
    package = "rcm-viewer" if flavour == "small" else "rcm-viewer-full"
    other = "rcm-viewer-full" if flavour == "small" else "rcm-viewer"
    stage = BUILD / f"deb-{flavour}"
    shutil.rmtree(stage, ignore_errors=True)
    opt = stage / "opt" / "rcm-viewer"
    try:  # hard links: no second copy of a few hundred MB
        shutil.copytree(app, opt, symlinks=True, copy_function=os.link)
    except OSError:
        shutil.copytree(app, opt, symlinks=True)
    (stage / "usr" / "bin").mkdir(parents=True)
    (stage / "usr" / "bin" / "rcm-viewer").symlink_to("/opt/rcm-viewer/rcm-viewer")
    apps = stage / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    (apps / "rcm-viewer.desktop").write_text(desktop_entry(), encoding="utf-8")
    hicolor = stage / "usr" / "share" / "icons" / "hicolor"
    (hicolor / "256x256" / "apps").mkdir(parents=True)
    shutil.copy2(icons["png"], hicolor / "256x256" / "apps" / "rcm-viewer.png")
    (hicolor / "scalable" / "apps").mkdir(parents=True)
    shutil.copy2(icons["svg"], hicolor / "scalable" / "apps" / "rcm-viewer.svg")
    debian = stage / "DEBIAN"
    debian.mkdir()
    installed_kb = folder_bytes(stage) // 1024
    (debian / "control").write_text(
        "\n".join(
            [
                f"Package: {package}",
                f"Version: {ver}",
                "Section: science",
                "Priority: optional",
                "Architecture: amd64",
                f"Depends: {DEB_DEPENDS}",
                f"Conflicts: {other}",
                f"Replaces: {other}",
                f"Installed-Size: {installed_kb}",
                "Maintainer: rcm-viewer developers <rcm-viewer@localhost>",
                "Description: reader-assist viewer for reflectance confocal microscopy mosaics",
                " Tiled viewer, structured RCM assessment form, case store and a demonstration",
                " classifier. Not a diagnostic device.",
                "",
            ]
        ),
        encoding="utf-8",
    )
    refresh = (
        "#!/bin/sh\nset -e\n"
        "command -v update-desktop-database >/dev/null 2>&1 && "
        "update-desktop-database -q /usr/share/applications || true\n"
        "command -v gtk-update-icon-cache >/dev/null 2>&1 && "
        "gtk-update-icon-cache -q -t /usr/share/icons/hicolor || true\n"
    )
    for script in ("postinst", "postrm"):
        (debian / script).write_text(refresh, encoding="utf-8")
        (debian / script).chmod(0o755)
    out = DIST / f"{package}_{ver}_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(stage), str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(stage, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--flavour", choices=("small", "full"), default=os.environ.get("RCM_FLAVOUR", "small")
    )
    parser.add_argument(
        "--no-packages", action="store_true", help="only the one-folder app (no .tar.gz / .deb)"
    )
    args = parser.parse_args(argv)
    ver = version()
    started = time.perf_counter()
    icons = render_icons(BUILD / "icons")
    app = run_pyinstaller(args.flavour, BUILD / "icons")
    info: dict[str, object] = {
        "flavour": args.flavour,
        "version": ver,
        "platform": sys.platform,
        "app": str(app),
        "pyinstaller_seconds": round(time.perf_counter() - started, 1),
        "folder_bytes": folder_bytes(app),
        "folder_files": sum(1 for p in app.rglob("*") if p.is_file()),
    }
    if sys.platform.startswith("linux") and not args.no_packages:
        t0 = time.perf_counter()
        tarball = make_tarball(app, args.flavour, ver)
        info |= {
            "tarball": str(tarball),
            "tarball_bytes": tarball.stat().st_size,
            "tarball_seconds": round(time.perf_counter() - t0, 1),
        }
        if shutil.which("dpkg-deb"):
            t0 = time.perf_counter()
            deb = make_deb(app, args.flavour, ver, icons)
            info |= {
                "deb": str(deb),
                "deb_bytes": deb.stat().st_size,
                "deb_seconds": round(time.perf_counter() - t0, 1),
            }
    info["total_seconds"] = round(time.perf_counter() - started, 1)
    (DIST / f"build-info-{args.flavour}.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
