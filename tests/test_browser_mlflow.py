"""The MLflow UI in headless Chromium: the registered model and its `champion` alias.

The registry is filled the quick way, with the project's own registry helpers but a tiny
model (the full training path is covered by tests/test_registry_model_asset.py and the
Dagster browser test): two versions of the registered model `flights`, `champion` on the
first and `challenger` on the second, as the promotion gate leaves them. Then
`mlflow server` is started on a free loopback port (its own process group, one worker)
over the same SQLite store, and the browser opens the model list and the model's page and
finds the alias beside its version. Screenshots: tests/output/<test name>/NN-<step>.png.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser_helpers import Shots, chromium_page, wait_http
from e2e_helpers import free_port, process_group

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.timeout(300)]


def _register_two_versions(tracking_uri: str, artifacts: Path) -> tuple[str, str]:
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    from driftloop.training.registry import (
        experiment_id_for,
        make_client,
        set_alias,
        using_tracking_uri,
    )

    class Constant(mlflow.pyfunc.PythonModel):
        _skip_type_hint_validation = True

        def predict(self, context, model_input, params=None):
            return np.full(len(model_input), 0.2)

    client = make_client(tracking_uri)
    experiment = experiment_id_for(client, "flights", tracking_uri, artifacts)
    example = pd.DataFrame({"hour": [8.5, 17.0], "carrier": ["UA", "AA"]})
    versions = []
    with using_tracking_uri(tracking_uri):
        for _ in range(2):
            with mlflow.start_run(experiment_id=experiment):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=Constant(),
                    signature=infer_signature(example, np.array([0.2, 0.2])),
                    pip_requirements=["mlflow"],
                )
            registered = mlflow.register_model(info.model_uri, "flights")
            versions.append(str(registered.version))
    client.update_registered_model("flights", description="flights test model")
    set_alias(client, "flights", "champion", versions[0])
    set_alias(client, "flights", "challenger", versions[1])
    return versions[0], versions[1]


@pytest.mark.slow
def test_mlflow_ui_shows_the_registered_model_and_its_champion(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    champion, challenger = _register_two_versions(uri, tmp_path / "mlartifacts")
    shots = Shots(request.node.name)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    command += ["--default-artifact-root", (tmp_path / "mlartifacts").as_uri()]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log_path = tmp_path / "mlflow_server.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    with process_group(command, env, log_path) as process:
        wait_http(f"{base}/health", process, log_path, timeout=120)
        with chromium_page() as page:
            # MLflow 3 greets a first visit with a dialog about the new registry UI.
            greeting = page.get_by_role("button", name="Try it now")
            page.add_locator_handler(greeting, lambda button: button.click())
            # 1. The registered models list names `flights`.
            page.goto(f"{base}/#/models")
            page.get_by_role("link", name="flights", exact=True).first.wait_for(timeout=60_000)
            shots(page, "registered-models")

            # 2. The model's page shows its versions and the champion alias on the right one.
            page.get_by_role("link", name="flights", exact=True).first.click()
            page.wait_for_url("**/models/flights**")
            page.get_by_text("champion", exact=False).first.wait_for(timeout=60_000)
            row = page.locator("tr, [role='row']", has_text=f"Version {champion}").filter(
                has_text="champion"
            )
            assert row.count() >= 1, page.inner_text("body")[:3000]
            other = page.locator("tr, [role='row']", has_text=f"Version {challenger}").filter(
                has_text="challenger"
            )
            assert other.count() >= 1, page.inner_text("body")[:3000]
            shots(page, "model-with-champion-alias")

            # 3. The champion's version page names the alias too.
            page.goto(f"{base}/#/models/flights/versions/{champion}")
            page.get_by_text("champion").first.wait_for(timeout=60_000)
            shots(page, "champion-version")
        assert process.poll() is None, log_path.read_text()[-3000:]
    print(f"whole test {time.monotonic() - started:.0f} s; screenshots in {shots.folder}")
    assert len(shots.paths) == 3 and all(p.stat().st_size > 5_000 for p in shots.paths)
