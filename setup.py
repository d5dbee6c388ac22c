"""Packages of the wheel: the code found by find_packages, plus two data-only packages.

The bundled model (``models/``) and the demo mosaics (``resources/demo/``) must not move in
git (41 MB of weights), so they are mapped into the package namespace here instead:
``rcm_viewer.bundled_models`` -> ``models`` and ``rcm_viewer.bundled_demo`` ->
``resources/demo``. This lives in setup.py, not pyproject.toml, because pyproject cannot
combine an automatic package search with extra mapped packages; everything else (metadata,
package-data globs) stays in pyproject.toml. rcm_viewer/paths.py finds both again.
"""

from setuptools import find_packages, setup

DATA_PACKAGES = {
    "rcm_viewer.bundled_models": "models",
    "rcm_viewer.bundled_demo": "resources/demo",
}

setup(
    packages=find_packages(include=["rcm_viewer", "rcm_viewer.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
)
