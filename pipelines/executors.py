"""The code location's executor, chosen by $DRIFTLOOP_EXECUTOR (in-process unless told).

`in_process` (default): every step in the run's own process. Our steps form chains that
import mlflow, lightgbm and duckdb, and a process per step would import them and load the
code location again for each step; concurrent runs already share the two cores.
`multiprocess`: a process per step, at most $DRIFTLOOP_MAX_CONCURRENT_STEPS (default 2) at
once, started by a forkserver that has preloaded the code location (pays where a run holds
independent heavy steps, such as a backfill's drift and performance on many cores).
`celery`: dagster-celery's executor, each step a task on a Celery worker (a Redis broker;
docs/deploy.md). `k8s`: dagster-k8s' executor (the optional `scale` group), each step a
Kubernetes Job. Both are configured by the YAML file $DRIFTLOOP_EXECUTOR_CONFIG names
(deploy/celery/executor.yaml, deploy/k8s/executor.yaml: the run config's `execution:
config:` block).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

EXECUTOR_ENV = "DRIFTLOOP_EXECUTOR"
EXECUTOR_CONFIG_ENV = "DRIFTLOOP_EXECUTOR_CONFIG"
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")


def execution_config(path: str | Path) -> dict[str, Any]:
    """The `execution: config:` block of a run config file (deploy/*/executor.yaml)."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text()) or {}
    config = (raw.get("execution") or {}).get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected an `execution: config:` mapping (deploy/*.yaml)")
    return config


def _scale_executor(name: str) -> ExecutorDefinition:
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor
    try:
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    except ImportError as error:
        raise RuntimeError(
            f"{EXECUTOR_ENV}={name} needs the optional `scale` group: uv sync --group scale"
        ) from error


def executor_from_env(environ: dict[str, str] | None = None) -> ExecutorDefinition:
    env = os.environ if environ is None else environ
    name = env.get(EXECUTOR_ENV, "in_process").strip() or "in_process"
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={name!r}: expected one of {', '.join(EXECUTORS)}")
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        forkserver = {"forkserver": {"preload_modules": ["pipelines.definitions"]}}
        steps = int(env.get("DRIFTLOOP_MAX_CONCURRENT_STEPS", "2"))
        return multiprocess_executor.configured(
            {"max_concurrent": steps, "start_method": forkserver}, name="multiprocess"
        )
    executor = _scale_executor(name)
    path = env.get(EXECUTOR_CONFIG_ENV)
    return executor.configured(execution_config(path), name=name) if path else executor
