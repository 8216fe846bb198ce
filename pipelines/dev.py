"""`python -m pipelines.dev`: `dg dev -w workspace.yaml` on the project's persistent instance.

Sets DAGSTER_HOME to <data root>/dagster_home (unless already set) so run history and
sensor cursors survive a restart; with `--postgres URL` the instance keeps runs, event logs
and schedules in that PostgreSQL database (deploy/postgres/dagster.yaml). MLflow follows
$MLFLOW_TRACKING_URI (a tracking server: docs/deploy.md). Prints the UI's address once it
answers, stops early with a clear message if the port is taken, and keeps Dagster's DEBUG
event lines out of the console unless `--verbose`. SIGINT (Ctrl-C) and SIGTERM are passed
to Dagster; the command returns once Dagster and every process it started have stopped.
Other arguments go to `dg dev` (Dagster's command line; same options as `dagster dev`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from driftloop.paths import PROJECT_ROOT, data_root, default_mlflow_uri
from pipelines.instance import (
    POSTGRES_URL_ENV,
    instance_at,
    libpq_url,
    project_dagster_home,
    sqlalchemy_url,
)

# How long what dg dev leaves behind may take to stop on its own, and then on SIGTERM.
GRACE_SECONDS = 5.0
DEBUG_MARK = " - DEBUG - "  # Dagster's console format: "<time> - dagster - DEBUG - <run> ..."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.dev", description=__doc__, add_help=False
    )
    parser.add_argument("--port", "-p", type=int, default=3000, help="UI port (default 3000)")
    parser.add_argument("--host", "-h", default="127.0.0.1", help="UI address to bind")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="",
        metavar="URL",
        help="keep the instance in PostgreSQL (postgresql://USER:PASSWORD@HOST:PORT/DB; "
        f"without URL: ${POSTGRES_URL_ENV})",
    )
    parser.add_argument("--verbose", action="store_true", help="show Dagster's DEBUG lines")
    parser.add_argument("--help", action="help", help="show this help and exit")
    return parser


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def check_postgres(url: str) -> str | None:
    """None if the database answers, else why not (said before Dagster's long traceback)."""
    import psycopg2

    try:
        psycopg2.connect(libpq_url(url), connect_timeout=5).close()
    except psycopg2.Error as error:
        return str(error).strip()
    return None


def _announce_when_up(host: str, port: int, child: subprocess.Popen) -> None:
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    while child.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                break
        except OSError:
            time.sleep(1)
    else:
        return
    bar = "=" * 64
    print(f"\n{bar}\n  driftloop: the Dagster UI is up at {url}   (Ctrl-C stops it)\n{bar}\n")
    sys.stdout.flush()


def _relay(child: subprocess.Popen, verbose: bool) -> None:
    """Copy the child's output to the console, without DEBUG event lines unless verbose."""
    assert child.stdout is not None
    for line in child.stdout:
        if verbose or DEBUG_MARK not in line:
            sys.stdout.write(line)
            sys.stdout.flush()


def without_password(url: str) -> str:
    """`url` fit for the console: the password, if any, replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _environment(args: argparse.Namespace) -> dict[str, str] | str:
    """The child's environment, or the message to stop with."""
    env = dict(os.environ)
    if args.postgres is not None:
        url = args.postgres or env.get(POSTGRES_URL_ENV, "")
        if not url:
            return f"--postgres needs a URL (or ${POSTGRES_URL_ENV})"
        problem = check_postgres(url)
        if problem:
            return f"cannot connect to PostgreSQL at {without_password(url)}: {problem}"
        env[POSTGRES_URL_ENV] = sqlalchemy_url(url)
    home = project_dagster_home(postgres=args.postgres is not None)
    env["DAGSTER_HOME"] = str(home)
    mlflow = env.get("MLFLOW_TRACKING_URI") or default_mlflow_uri(data_root())
    where = "SQLite"
    if args.postgres is not None:
        where = f"PostgreSQL ({without_password(env[POSTGRES_URL_ENV])})"
    print(f"driftloop: Dagster instance at {home} on {where}; MLflow at {mlflow}", flush=True)
    return env


def prepare_storage(home: Path, env: dict[str, str]) -> None:
    """Create the instance's tables here, once, before `dg dev` starts: its webserver,
    daemon and code server each open the instance, and three processes creating a new
    SQLite storage at once can leave its schema-version table with two heads."""
    from dagster import AssetKey

    os.environ.update({k: v for k, v in env.items() if k == POSTGRES_URL_ENV})
    with instance_at(home) as instance:
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        instance.fetch_materializations(AssetKey("driftloop"), limit=1)


def main(argv: list[str] | None = None) -> int:
    args, rest = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if not port_is_free(args.host, args.port):
        print(
            f"driftloop: port {args.port} on {args.host} is taken (another dg dev?). "
            f"Stop that process or choose another port: python -m pipelines.dev --port "
            f"{args.port + 1}",
            file=sys.stderr,
        )
        return 2
    env = _environment(args)
    if isinstance(env, str):
        print(f"driftloop: {env}", file=sys.stderr)
        return 2
    prepare_storage(Path(env["DAGSTER_HOME"]), env)
    dg = Path(sys.executable).with_name("dg")
    command = [str(dg) if dg.exists() else "dg", "dev"]
    command += ["-w", str(PROJECT_ROOT / "workspace.yaml")]
    command += ["--host", args.host, "--port", str(args.port), *rest]
    # dg dev runs in a session of its own, so a signal reaches it once, from here:
    # Ctrl-C (SIGINT) and SIGTERM are passed on, and it stops its webserver, daemon and
    # code servers. A signal that comes before it has started is passed on once it has.
    received: list[int] = []
    child: subprocess.Popen | None = None

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    child = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    if received:
        child.send_signal(received[-1])
    threading.Thread(
        target=_announce_when_up, args=(args.host, args.port, child), daemon=True
    ).start()
    # The relay ends with dg dev, not with the pipe: a code server it leaves to stop on
    # its own heartbeat timeout keeps the pipe open for a while.
    relay = threading.Thread(target=_relay, args=(child, args.verbose), daemon=True)
    relay.start()
    code = child.wait()
    stop_session(child.pid)
    relay.join(timeout=2)
    return code


def _session_alive(session: int) -> bool:
    try:
        os.killpg(session, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_session(session: int, grace: float = GRACE_SECONDS) -> None:
    """End what dg dev left in its session (a code server waiting for its heartbeat
    to time out, a run worker): a while to finish on its own, then SIGTERM, then SIGKILL."""
    for signum in (None, signal.SIGTERM, signal.SIGKILL):
        if signum is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session, signum)
        deadline = time.monotonic() + grace
        while _session_alive(session) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _session_alive(session):
            return


if __name__ == "__main__":
    sys.exit(main())
