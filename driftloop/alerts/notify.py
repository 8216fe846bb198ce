"""Deliver alerts to a Slack-compatible webhook and/or email, once each, within a rate limit.

Every alert goes through an outbox kept in one JSON file under the data root
(``<data root>/alerts/outbox.json``, guarded by a file lock so sensors in several processes
share it): an alert whose key was seen before is dropped (deduplication), the rest are
delivered at most ``max_per_hour`` messages an hour. When more are waiting than the hour
allows, the last message of the hour lists all the remaining ones, so nothing is dropped
silently and a storm costs one message. A delivery that fails stays in the outbox and is
tried again on the next call, up to ``MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path

log = logging.getLogger("driftloop.alerts")

HOUR = 3600.0
MAX_ATTEMPTS = 5
# Keys of delivered alerts are remembered this long (a ledger entry or a run never repeats
# after that; a digest's key names its day).
REMEMBER_SECONDS = 180 * 24 * HOUR


@dataclass(frozen=True)
class Alert:
    """One message: ``key`` identifies the event (the same event always has the same key)."""

    key: str
    kind: str  # run_failure, blocked, retrain, promoted, rejected, rollback, canary, digest
    title: str
    lines: list[str] = field(default_factory=list)
    link: str | None = None
    dataset: str | None = None

    def text(self) -> str:
        body = [self.title, *self.lines]
        if self.link:
            body.append(self.link)
        return "\n".join(body)

    def slack_text(self) -> str:
        body = [f"*{self.title}*", *self.lines]
        if self.link:
            body.append(f"<{self.link}|Open in Dagster>")
        return "\n".join(body)


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go. With neither a webhook nor an SMTP host, and no dry run, alerts
    are off."""

    webhook_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    email_from: str = "driftloop@localhost"
    email_to: tuple[str, ...] = ()
    dry_run: bool = False
    max_per_hour: int = 20
    timeout_seconds: float = 10.0

    @property
    def channels(self) -> list[str]:
        out = []
        if self.webhook_url:
            out.append("webhook")
        if self.smtp_host and self.email_to:
            out.append("email")
        return out

    @property
    def enabled(self) -> bool:
        return self.dry_run or bool(self.channels)


@dataclass
class PostReport:
    """What one ``Outbox.post`` did, by alert key."""

    sent: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # held by the rate limit or a failure
    errors: list[str] = field(default_factory=list)
    messages: int = 0


def _empty_state() -> dict:
    return {"seen": {}, "pending": [], "sent_at": []}


class Outbox:
    """The outbox of one data root; ``post`` enqueues new alerts and delivers what it may."""

    def __init__(self, settings: AlertSettings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.path = folder / "outbox.json"

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "outbox.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(self.path.read_text()) if self.path.exists() else None
                state = state or _empty_state()
                yield state
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(state, indent=1))
                tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def seen(self, key: str) -> bool:
        if not self.path.exists():
            return False
        with self._state() as state:
            return key in state["seen"]

    def post(self, alerts: list[Alert], now: float | None = None) -> PostReport:
        """Enqueue the alerts not seen before, then deliver within the rate limit."""
        report = PostReport()
        if not self.settings.enabled:
            return report
        now = time.time() if now is None else now
        with self._state() as state:
            for alert in alerts:
                if alert.key in state["seen"]:
                    report.duplicate.append(alert.key)
                    continue
                state["seen"][alert.key] = now
                state["pending"].append({"alert": asdict(alert), "attempts": 0})
            self._deliver(state, now, report)
            horizon = now - REMEMBER_SECONDS
            state["seen"] = {k: t for k, t in state["seen"].items() if t >= horizon}
        return report

    def _deliver(self, state: dict, now: float, report: PostReport) -> None:
        state["sent_at"] = [t for t in state["sent_at"] if t > now - HOUR]
        room = self.settings.max_per_hour - len(state["sent_at"])
        pending = state["pending"]
        while pending and room > 0:
            # The hour's last message carries everything still waiting.
            batch = pending[:] if room == 1 else pending[:1]
            alerts = [Alert(**{**p["alert"], "lines": list(p["alert"]["lines"])}) for p in batch]
            message = alerts[0] if len(alerts) == 1 else combine(alerts)
            try:
                self._send(message)
            except (OSError, smtplib.SMTPException, urllib.error.URLError) as error:
                text = f"{message.title}: {type(error).__name__}: {error}"
                report.errors.append(text)
                log.warning("alert not delivered (will retry): %s", text)
                for p in batch:
                    p["attempts"] += 1
                given_up = [p for p in batch if p["attempts"] >= MAX_ATTEMPTS]
                for p in given_up:
                    log.error("alert dropped after %d attempts: %s", MAX_ATTEMPTS, p["alert"])
                state["pending"] = [p for p in pending if p not in given_up]
                break
            state["sent_at"].append(now)
            room -= 1
            report.messages += 1
            report.sent += [a.key for a in alerts]
            del pending[: len(batch)]
        report.waiting = [p["alert"]["key"] for p in state["pending"]]

    def _send(self, alert: Alert) -> None:
        settings = self.settings
        if settings.dry_run:
            log.warning("alert (dry run, not sent) to %s: %s", settings.channels, alert.text())
            return
        if settings.webhook_url:
            send_webhook(settings, alert)
        if "email" in settings.channels:
            send_email(settings, alert)


def combine(alerts: list[Alert]) -> Alert:
    """One message standing for several (when the hour's limit is reached)."""
    lines = [f"- {a.title}" + (f" ({a.link})" if a.link else "") for a in alerts]
    return Alert(
        key="+".join(a.key for a in alerts),
        kind="combined",
        title=f"driftloop: {len(alerts)} alerts (held back by the hourly limit)",
        lines=lines,
    )


def send_webhook(settings: AlertSettings, alert: Alert) -> None:
    """POST Slack's incoming-webhook payload (``text``, with mrkdwn) as JSON."""
    body = json.dumps({"text": alert.slack_text()}).encode()
    request = urllib.request.Request(
        settings.webhook_url,
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=settings.timeout_seconds) as response:
        if response.status >= 300:
            raise urllib.error.URLError(f"webhook answered HTTP {response.status}")


def send_email(settings: AlertSettings, alert: Alert) -> None:
    message = EmailMessage()
    message["Subject"] = alert.title
    message["From"] = settings.email_from
    message["To"] = ", ".join(settings.email_to)
    message["X-Driftloop-Alert"] = alert.key[:900]
    message.set_content(alert.text())
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(message)
