"""deploy/'s configuration files loaded by Dagster's own config schemas: the instance files,
the Celery and Kubernetes executors' run config (dagster-celery; dagster-k8s, the `scale`
group) and the Kubernetes run launcher; and the executor chosen by $DRIFTLOOP_EXECUTOR.

Nothing here starts a broker or a cluster: the Kubernetes launcher is built from a
kubeconfig naming an address where no cluster listens, which loading never contacts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, job, op, validate_run_config
from engines import Postgres

from driftloop.paths import PROJECT_ROOT
from pipelines.executors import executor_from_env
from pipelines.instance import POSTGRES_URL_ENV

DEPLOY = PROJECT_ROOT / "deploy"


@op
def step() -> int:
    return 1


def _job_on(executor):
    @job(executor_def=executor)
    def probe() -> None:
        step()

    return probe


def _run_config(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name / "executor.yaml").read_text())


def test_the_celery_executor_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_celery import celery_executor

    monkeypatch.setenv("DRIFTLOOP_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DRIFTLOOP_CELERY_BACKEND", "redis://127.0.0.1:6379/1")
    config = _run_config("celery")
    validated = validate_run_config(_job_on(celery_executor), config)
    [executor] = validated["execution"].values()  # keyed by the executor's name
    assert executor["broker"] == "redis://127.0.0.1:6379/0"
    assert executor["backend"] == "redis://127.0.0.1:6379/1"
    # A step whose worker process dies goes back on the queue (tests/test_e2e_celery.py).
    settings = executor["config_source"]
    assert settings["task_acks_late"] and settings["task_reject_on_worker_lost"]
    config["execution"]["config"]["brokr"] = "x"  # a misspelt key is refused
    with pytest.raises(Exception, match="brokr"):
        validate_run_config(_job_on(celery_executor), config)


def test_the_kubernetes_executor_config_loads() -> None:
    from dagster_k8s import k8s_job_executor

    validated = validate_run_config(_job_on(k8s_job_executor), _run_config("k8s"))
    [config] = validated["execution"].values()
    assert config["job_namespace"] == "driftloop" and config["max_concurrent"] == 4
    assert config["tag_concurrency_limits"] == [{"key": "driftloop/training", "limit": 1}]


def test_the_executor_is_chosen_by_the_environment(tmp_path: Path) -> None:
    assert executor_from_env({}).name == "in_process"
    assert executor_from_env({"DRIFTLOOP_EXECUTOR": "multiprocess"}).name == "multiprocess"
    celery = executor_from_env(
        {
            "DRIFTLOOP_EXECUTOR": "celery",
            "DRIFTLOOP_EXECUTOR_CONFIG": str(DEPLOY / "celery" / "executor.yaml"),
        }
    )
    assert celery.name == "celery"
    assert executor_from_env({"DRIFTLOOP_EXECUTOR": "k8s"}).name == "k8s"
    with pytest.raises(ValueError, match="expected one of in_process, multiprocess"):
        executor_from_env({"DRIFTLOOP_EXECUTOR": "threads"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("execution: {}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: expected an `execution: config:`"):
        executor_from_env({"DRIFTLOOP_EXECUTOR": "k8s", "DRIFTLOOP_EXECUTOR_CONFIG": str(bad)})


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: "not-a-token"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


@pytest.mark.slow
def test_the_kubernetes_instance_file_loads_with_postgres_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres: Postgres
) -> None:
    from dagster_k8s import K8sRunLauncher

    settings = yaml.safe_load((DEPLOY / "k8s" / "dagster.yaml").read_text())
    # Outside a cluster: the same launcher, reading a kubeconfig instead of the pod's account.
    launcher = settings["run_launcher"]["config"]
    launcher["load_incluster_config"] = False
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    launcher["kubeconfig_file"] = str(tmp_path / "kubeconfig")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.setenv(POSTGRES_URL_ENV, postgres.create_database("k8s"))

    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_launcher, K8sRunLauncher)
        assert instance.run_launcher.job_image == "driftloop:latest"
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 8


def test_the_shipped_instances_retry_failed_runs(tmp_path: Path) -> None:
    from pipelines.instance import write_instance

    for name in ("dagster.yaml", "postgres/dagster.yaml", "k8s/dagster.yaml"):
        retries = yaml.safe_load((DEPLOY / name).read_text())["run_retries"]
        assert retries == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": True}
    # The SQLite instance that pipelines.dev writes, as Dagster reads it.
    with DagsterInstance.from_config(str(write_instance(tmp_path / "home"))) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
