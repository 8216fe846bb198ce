"""Where a model came from: the code's version and hash, and the packages it needs to load."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

from driftloop.paths import PROJECT_ROOT

PACKAGE_DIR = Path(__file__).resolve().parent.parent

# Distributions the pyfunc needs at load time. Listing them skips MLflow's requirement
# inference, which loads the model again in a subprocess (seconds per log_model).
_REQUIREMENTS = ("mlflow", "lightgbm", "scikit-learn", "pandas", "numpy", "pydantic")
_REQUIREMENTS += ("PyYAML", "cloudpickle")


def source_hash() -> str:
    """sha256 of the driftloop package's Python sources (path + content, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of the project if it is a repository, else src-<hash of the sources>."""
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        commit = out.stdout.strip()
        if commit:
            return commit
    except (OSError, subprocess.SubprocessError):
        pass
    return "src-" + source_hash()[:16]


def requirements() -> list[str]:
    pins = []
    for name in _REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins
