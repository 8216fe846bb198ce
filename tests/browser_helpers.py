"""Helpers for the browser and serving tests: a prepared flights installation, headless
Chromium through Playwright, screenshots per step, and servers in their own process group.

`prepare_flights` builds, in process and quickly, what a user has after a few weeks of the
loop: N replayed days ingested and featurized, a champion trained, evaluated and promoted,
every day scored, and drift reports for the last days. It runs `dagster.materialize`
against the code location (`pipelines.definitions`) on the given Dagster instance, so the
UI of a `dagster dev` on the same DAGSTER_HOME shows these runs and materializations.

Browser: Debian's Chromium (`/usr/bin/chromium`, package `chromium`) driven by the
Playwright Python package, whose wheel ships its own driver; no browser is downloaded
(never `playwright install`). The flags are those this machine needs offline.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from driftloop.paths import PROJECT_ROOT

CHROMIUM = os.environ.get("DRIFTLOOP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Screenshots of browser tests: tests/output/<test name>/NN-<step>.png (overridable).
OUTPUT_ROOT = Path(os.environ.get("DRIFTLOOP_TEST_OUTPUT", PROJECT_ROOT / "tests" / "output"))


@dataclass(frozen=True)
class Prepared:
    root: Path
    home: Path
    tracking_uri: str
    days: list[str]
    champion_version: str


def flights_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a throwaway installation under tmp_path (data, instance, MLflow)."""
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {
        "DRIFTLOOP_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "DRIFTLOOP_REPLAY": "off",  # the tests land their own files
    }


def prepare_flights(env: dict[str, str], days: int = 35, drift_days: int = 2) -> Prepared:
    """Replay `days` days from 2013-01-01 and materialize the whole flights graph in process.

    `env` (see `flights_env`) is applied to os.environ for the duration, since the code
    location reads it when it is built.
    """
    from dagster import AssetKey, DagsterInstance, materialize

    from driftloop.data.replay import replay_days
    from driftloop.names import CHAMPION
    from driftloop.paths import dataset_paths
    from driftloop.training.registry import make_client, version_for_alias

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from driftloop.data.contract import load_contracts
        from driftloop.paths import contracts_dir
        from pipelines.factory import build_dataset_definitions
        from resources.lake import LakeResource
        from resources.mlflow import MlflowResource

        root = Path(env["DRIFTLOOP_DATA_DIR"])
        paths = dataset_paths("flights", root)
        first = date(2013, 1, 1)
        replay_days(paths, first, days)
        day_keys = [(first + timedelta(days=i)).isoformat() for i in range(days)]
        contract = load_contracts(contracts_dir())["flights"]
        assets = list(build_dataset_definitions(contract).assets or [])
        resources = {
            "lake": LakeResource(data_dir=str(root)),
            "mlflow": MlflowResource(tracking_uri=env["MLFLOW_TRACKING_URI"], data_dir=str(root)),
        }
        with DagsterInstance.get() as instance:

            def run(names: list[str], first_day: str | None, last_day: str | None) -> None:
                keys = {AssetKey(["flights", n]) for n in names}
                selection = [a for a in assets if a.keys & keys]
                tags = {}
                if first_day:
                    tags = {
                        "dagster/asset_partition_range_start": first_day,
                        "dagster/asset_partition_range_end": last_day,
                    }
                result = materialize(
                    selection,
                    selection=list(keys),
                    instance=instance,
                    resources=resources,
                    tags=tags,
                )
                assert result.success, f"materializing {names} failed"

            run(["raw_data", "features"], day_keys[0], day_keys[-1])
            run(["model", "eval_report", "promotion"], None, None)
            run(["predictions"], day_keys[0], day_keys[-1])
            if drift_days:
                run(["drift_report"], day_keys[-drift_days], day_keys[-1])
        uri = env["MLFLOW_TRACKING_URI"]
        champion = version_for_alias(make_client(uri), "flights", CHAMPION)
        assert champion is not None, "the first model was not promoted to champion"
        return Prepared(root, Path(env["DAGSTER_HOME"]), uri, day_keys, str(champion.version))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- processes ------------------------------------------------------------------------


def http_ok(url: str, timeout: float = 3) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def wait_http(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    """Wait until `url` answers 200; fail early (with the log's tail) if the process died."""
    deadline = time.monotonic() + timeout
    while not http_ok(url):
        if process.poll() is not None:
            tail = log_path.read_text()[-3000:]
            raise AssertionError(f"the server exited ({process.returncode}) before {url}:\n{tail}")
        if time.monotonic() > deadline:
            tail = log_path.read_text()[-3000:]
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {url}:\n{tail}")
        time.sleep(0.5)


# --- browser --------------------------------------------------------------------------


class Shots:
    """Numbered full-page screenshots of one test: <folder>/01-<step>.png, ..."""

    def __init__(self, test_name: str) -> None:
        self.folder = OUTPUT_ROOT / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0
        self.paths: list[Path] = []

    def __call__(self, page: Any, step: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        self.paths.append(path)
        return path


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1600, 1000)) -> Iterator[Any]:
    """A Playwright page in headless Debian Chromium, closed with its browser afterwards."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise AssertionError(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium "
            "chromium-driver); the tests never download a browser"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
