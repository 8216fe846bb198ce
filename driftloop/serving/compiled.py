"""Compiled trees: a LightGBM model version as a shared library of C code, for every scoring
path (batch predictions, the endpoint, the stream).

TL2cgen writes the trees (read from LightGBM's model text by Treelite, cut at the best
iteration) as C functions and gcc builds them into `model.so`, which TL2cgen's predictor
calls through ctypes (the GIL is released while it runs). Chosen over ONNX Runtime by
measurement side by side (docs/serving.md, compiled trees): on batches it scores faster
than `Booster.predict`, and it compares and sums in float64 as LightGBM does, so its
scores equal LightGBM's bit for bit; ONNX Runtime's tree ensembles hold thresholds in
float32 (a classifier's input too), so scores would differ from LightGBM's in the last
digits and online == batch would hold only when both sides ran the same runtime.

The library is built once per model version and kept under the data root
(`models/<dataset>/v<N>/compiled/<key>/`, the key a hash of the trees, TL2cgen's version
and the machine, so a rebuilt toolchain or another architecture builds its own), written
to a temporary folder and renamed into place (two processes loading one version at once
both end with one library), and logged to the version's MLflow run as the artifact folder
`compiled`. When it cannot be had (TL2cgen or gcc missing, a build error, or
`DRIFTLOOP_COMPILED=off`) the model scores with LightGBM's own predict and a log line
says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

LIBRARY_FILE = "model.so"
MANIFEST_FILE = "compiled.json"
ARTIFACT_PATH = "compiled"  # where the library goes in the model's MLflow run
SWITCH_ENV = "DRIFTLOOP_COMPILED"  # "off": score with LightGBM's predict
TOOLCHAIN = "gcc"


class CompileUnavailable(RuntimeError):
    """No compiled form here: the reason is logged and LightGBM's predict is used."""


def compiling_enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


@dataclass
class CompiledTrees:
    """A built library and a predictor per thread count and thread (TL2cgen's predictor
    holds per-call state, so threads scoring at once each get their own)."""

    folder: Path
    manifest: dict[str, Any]
    built: bool  # built by this process (else found in the cache)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def library(self) -> Path:
        return self.folder / LIBRARY_FILE

    def _predictor(self, threads: int) -> Any:
        predictors = getattr(self._local, "predictors", None)
        if predictors is None:
            predictors = self._local.predictors = {}
        predictor = predictors.get(threads)
        if predictor is None:
            import tl2cgen

            predictor = predictors[threads] = tl2cgen.Predictor(self.library, nthread=threads)
        return predictor

    def predict(self, matrix: np.ndarray, threads: int = 1) -> np.ndarray:
        """Scores of a rows x features float64 matrix (probability of label 1, or value)."""
        import numpy as np
        import tl2cgen

        data = tl2cgen.DMatrix(np.ascontiguousarray(matrix, dtype=np.float64), dtype="float64")
        return np.asarray(self._predictor(max(1, threads)).predict(data)).reshape(len(matrix))


def model_text(tabular: Any) -> str:
    """LightGBM's model text of `tabular`'s booster, cut at its best iteration."""
    return tabular.booster.model_to_string(num_iteration=tabular.best_iteration)


def cache_key(text: str) -> str:
    """What a library depends on: the trees, TL2cgen's version, the machine."""
    import tl2cgen
    import treelite

    # The modules' own version strings: asking the installed distributions' metadata
    # scans the environment's site-packages, on every model load.
    digest = hashlib.sha256()
    for part in (text, tl2cgen.__version__, treelite.__version__, platform.machine()):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def compile_trees(
    tabular: Any, cache: Path, identity: dict[str, str] | None = None
) -> CompiledTrees:
    """The compiled form of our LightGBM model `tabular`, from `cache/<key>/` if built
    before, else built there now. Raises CompileUnavailable saying why not."""
    if not compiling_enabled():
        raise CompileUnavailable(f"{SWITCH_ENV}=off")
    if shutil.which(TOOLCHAIN) is None:
        raise CompileUnavailable(f"no {TOOLCHAIN} on PATH to build the trees")
    try:
        import tl2cgen  # noqa: F401
        import treelite  # noqa: F401
    except ImportError as error:
        raise CompileUnavailable(f"tl2cgen/treelite not importable: {error}") from error
    text = model_text(tabular)
    folder = cache / cache_key(text)
    manifest_path = folder / MANIFEST_FILE
    if (folder / LIBRARY_FILE).exists() and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        return CompiledTrees(folder, manifest, built=False)
    staging = cache / f".build-{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=True)
    try:
        manifest = _build(text, staging, identity or {})
        try:
            staging.rename(folder)
        except OSError:  # another process put the same library there first
            if not (folder / LIBRARY_FILE).exists():
                raise
            manifest = json.loads(manifest_path.read_text())
            return CompiledTrees(folder, manifest, built=False)
    except CompileUnavailable:
        raise
    except Exception as error:
        raise CompileUnavailable(f"building the trees failed: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return CompiledTrees(folder, manifest, built=True)


def _build(text: str, folder: Path, identity: dict[str, str]) -> dict[str, Any]:
    from importlib.metadata import version

    import lightgbm as lgb
    import tl2cgen
    import treelite

    started = time.perf_counter()
    model = treelite.frontend.from_lightgbm(lgb.Booster(model_str=text))
    cores = os.cpu_count() or 1
    # The trees in a few translation units, compiled in parallel (one big C file is slow
    # to build and gains nothing at run time).
    tl2cgen.export_lib(
        model,
        toolchain=TOOLCHAIN,
        libpath=folder / LIBRARY_FILE,
        params={"parallel_comp": max(2, cores)},
        nthread=cores,
    )
    manifest = {
        **identity,
        "format": "tl2cgen",
        "library": LIBRARY_FILE,
        "trees": model.num_tree,
        "features": model.num_feature,
        "tl2cgen": version("tl2cgen"),
        "treelite": version("treelite"),
        "toolchain": TOOLCHAIN,
        "machine": platform.machine(),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def log_compiled(compiled: CompiledTrees, tracking_uri: str | None, run_id: str) -> None:
    """Log the library and its manifest to the version's MLflow run (a failure is logged,
    not raised: the scorer works without the copy in MLflow)."""
    if not run_id:
        return
    from driftloop.training.registry import make_client

    try:
        client = make_client(tracking_uri) if tracking_uri else None
        if client is None:
            import mlflow

            client = mlflow.MlflowClient()
        client.log_artifacts(run_id, str(compiled.folder), ARTIFACT_PATH)
    except Exception as error:
        log.warning("logging the compiled trees to run %s failed: %s", run_id, error)
