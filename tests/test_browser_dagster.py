"""The Dagster UI as people use it, in headless Chromium, against a `dagster dev` of its own.

The test prepares an installation in process (`browser_helpers.prepare_flights`: 35 days
replayed, ingested, featurized, a champion trained, evaluated and promoted, every day
scored, drift reports of the last day), then starts `dagster dev` on the same
DAGSTER_HOME on a free loopback port and, in the browser:

1. opens the asset graph of the `flights` group and sees its assets;
2. opens `flights/eval_report`: its metadata (the overall metrics table, the decision)
   and the link to the HTML report;
3. opens `flights/drift_report`: the per-column drift table and the HTML report link;
4. presses "Materialize" on `flights/eval_report`, follows the launched run and sees it
   succeed (checked in the instance too).

A screenshot of every step is written to tests/output/<test name>/NN-<step>.png. The
first-visit "Join the Dagster community" dialog is dismissed with its "Skip" button
whenever it shows up (a Playwright locator handler).
"""

from __future__ import annotations

import os
import re
import time
from contextlib import suppress
from pathlib import Path

import pytest
from browser_helpers import Shots, chromium_page, flights_env, http_ok, prepare_flights
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from e2e_helpers import dagster_dev, free_port, wait_for
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.timeout(600)]

ASSETS = ("raw_data", "features", "model", "eval_report", "promotion", "predictions")


@pytest.mark.slow
def test_dagster_ui_shows_the_graph_reports_and_runs_a_materialization(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    env = flights_env(tmp_path)
    prepared = prepare_flights(env, days=35, drift_days=1)
    prepared_after = time.monotonic() - started
    shots = Shots(request.node.name)
    full_env = {
        **os.environ,
        **env,
        # The test drives everything: sensors tick rarely, so no run of theirs competes.
        "DRIFTLOOP_NEW_DATA_SENSOR_SECONDS": "3600",
        "DRIFTLOOP_CATCH_UP_SENSOR_SECONDS": "3600",
        "DRIFTLOOP_RETRAIN_SENSOR_SECONDS": "3600",
        "DRIFTLOOP_AUTOMATION": "off",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with dagster_dev(full_env, tmp_path / "dagster_dev.log", port) as process:
        wait_for(
            "the Dagster webserver",
            lambda: process.poll() is not None or http_ok(f"{base}/server_info"),
            timeout=120,
            every=1,
        )
        assert process.poll() is None, (tmp_path / "dagster_dev.log").read_text()[-3000:]
        with chromium_page(viewport=(1600, 1800)) as page:
            skip = page.get_by_role("button", name="Skip")
            page.add_locator_handler(skip, lambda button: button.click())

            # 1. The asset graph of the dataset.
            page.goto(f"{base}/asset-groups/flights")
            graph = page.locator("[data-testid='asset-graph'], main, body").first
            for name in ASSETS:
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            text = graph.inner_text()
            assert all(name in text for name in (*ASSETS, "drift_report")), text[:2000]
            if skip.is_visible():
                # A screenshot is no action, so the handler would not run: click. The click
                # runs the handler first (it clicks Skip), then finds no button to click.
                with suppress(PlaywrightTimeoutError):
                    skip.click(timeout=3_000)
                skip.wait_for(state="hidden")
            page.wait_for_timeout(1000)  # the graph's layout settles
            shots(page, "asset-graph")

            # 2. The eval report's metadata: tables and the link to the HTML report.
            page.goto(f"{base}/assets/flights/eval_report")
            page.get_by_text("overall_metrics", exact=True).wait_for()
            for key in ("decision", "overall_metrics", "slices", "report_url"):
                assert page.get_by_text(key, exact=True).count() >= 1, key
            metrics_table = page.locator("table", has_text="challenger").filter(has_text="roc_auc")
            assert metrics_table.count() >= 1, "the overall metrics table is not shown"
            eval_link = page.locator("a[href^='file:'][href$='.html']").first
            eval_link.wait_for()
            href = eval_link.get_attribute("href") or ""
            # Named by version and the model's run id: reports/flights/eval/v1-<run id>.html
            assert re.search(r"/reports/flights/eval/v1-[0-9a-f]{12}\.html$", href), href
            assert Path(href.removeprefix("file://")).is_file()
            metrics_table.first.scroll_into_view_if_needed()
            shots(page, "eval-report")
            # The HTML report itself: the importance chart and which way each metric is better.
            page.goto(href)
            chart = page.locator("svg.importance-chart")
            chart.wait_for()
            assert chart.is_visible() and chart.locator("rect").count() >= 5
            log_loss = page.locator("tr", has_text="log_loss").first
            assert "lower" in log_loss.inner_text(), log_loss.inner_text()
            chart.scroll_into_view_if_needed()
            shots(page, "eval-report-importance")

            # 3. The drift report's metadata: the per-column table and the report link.
            page.goto(f"{base}/assets/flights/drift_report")
            page.get_by_text("share_drifted", exact=True).wait_for()
            drift_table = page.locator("table", has_text="wasserstein").filter(has_text="drifted")
            drift_table.first.wait_for()
            assert drift_table.first.locator("tr").count() > 10  # one row per feature
            drift_link = page.locator("a[href^='file:'][href$='.html']").first
            drift_link.wait_for()
            href = drift_link.get_attribute("href") or ""
            assert href.endswith(f"/reports/flights/drift/{prepared.days[-1]}.html"), href
            assert Path(href.removeprefix("file://")).is_file()
            drift_table.first.scroll_into_view_if_needed()
            shots(page, "drift-report")

            # 4. Launch a materialization of the eval report from the UI.
            os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
            with DagsterInstance.get() as instance:
                before = {r.run_id for r in instance.get_runs()}
                page.goto(f"{base}/assets/flights/eval_report")
                page.get_by_text("overall_metrics", exact=True).wait_for()
                page.locator("button", has_text=re.compile(r"^\s*Materialize\s*$")).first.click()
                toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}")).first
                toast.wait_for(timeout=60_000)
                shots(page, "materialization-launched")
                short = toast.inner_text().split()[-1]
                run_id = wait_for(
                    f"the launched run {short}",
                    lambda: next(
                        (
                            r.run_id
                            for r in instance.get_runs()
                            if r.run_id not in before and r.run_id.startswith(short)
                        ),
                        None,
                    ),
                    timeout=30,
                    every=1,
                )
                # The toast's "View" opens the run; so does its address.
                page.goto(f"{base}/runs/{run_id}")

                def finished() -> DagsterRunStatus | None:
                    run = instance.get_run_by_id(run_id)
                    done = (
                        DagsterRunStatus.SUCCESS,
                        DagsterRunStatus.FAILURE,
                        DagsterRunStatus.CANCELED,
                    )
                    return run.status if run is not None and run.status in done else None

                status = wait_for(f"run {run_id}", finished, timeout=180, every=2)
                assert status == DagsterRunStatus.SUCCESS, status
                # The run page says so too (it polls; reload to be sure).
                page.reload()
                page.get_by_text("Success", exact=True).first.wait_for(timeout=60_000)
                finished_log = page.get_by_text(re.compile(r"Finished execution of run"))
                finished_log.first.wait_for(timeout=60_000)
                shots(page, "materialization-succeeded")
                eval_key = AssetKey(["flights", "eval_report"])
                [run] = instance.get_runs(RunsFilter(run_ids=[run_id]))
                assert run.asset_selection == {eval_key}, run.asset_selection
                latest = instance.get_latest_materialization_event(eval_key)
                assert latest is not None and latest.run_id == run_id
    print(
        f"prepared in {prepared_after:.0f} s, whole test {time.monotonic() - started:.0f} s; "
        f"screenshots in {shots.folder}"
    )
    assert len(shots.paths) == 6 and all(p.stat().st_size > 10_000 for p in shots.paths)
