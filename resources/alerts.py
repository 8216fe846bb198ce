"""AlertsResource: where alerts go (webhook, SMTP, dry run), set by environment variables.

Off unless DRIFTLOOP_ALERT_WEBHOOK_URL, DRIFTLOOP_ALERT_SMTP_HOST (with
DRIFTLOOP_ALERT_EMAIL_TO) or DRIFTLOOP_ALERT_DRY_RUN is set; see docs/operations.md.
"""

from __future__ import annotations

import os

from dagster import ConfigurableResource, EnvVar

from driftloop.alerts.notify import Alert, AlertSettings, Outbox, PostReport
from driftloop.paths import data_root

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"

# Field name -> environment variable.
ENVIRONMENT = {
    "webhook_url": "DRIFTLOOP_ALERT_WEBHOOK_URL",
    "smtp_host": "DRIFTLOOP_ALERT_SMTP_HOST",
    "smtp_port": "DRIFTLOOP_ALERT_SMTP_PORT",
    "smtp_user": "DRIFTLOOP_ALERT_SMTP_USER",
    "smtp_password": "DRIFTLOOP_ALERT_SMTP_PASSWORD",
    "smtp_starttls": "DRIFTLOOP_ALERT_SMTP_STARTTLS",
    "email_from": "DRIFTLOOP_ALERT_EMAIL_FROM",
    "email_to": "DRIFTLOOP_ALERT_EMAIL_TO",
    "dry_run": "DRIFTLOOP_ALERT_DRY_RUN",
    "max_per_hour": "DRIFTLOOP_ALERT_MAX_PER_HOUR",
    "dagster_url": "DRIFTLOOP_DAGSTER_URL",
    "data_dir": "DRIFTLOOP_DATA_DIR",
}
_INTS = {"smtp_port", "max_per_hour"}


def _flag(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    return value.strip().lower() not in {"", "0", "off", "false", "no"}


class AlertsResource(ConfigurableResource):
    """Alert channels and the Dagster UI's address for links; the outbox lives under the
    data root (``<data root>/alerts``)."""

    webhook_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: str = ""
    email_from: str = "driftloop@localhost"
    email_to: str = ""  # comma-separated addresses
    dry_run: str = ""
    max_per_hour: int = 20
    dagster_url: str = DEFAULT_DAGSTER_URL
    data_dir: str | None = None

    @classmethod
    def from_environment(cls) -> AlertsResource:
        """Each setting whose variable is set is read from it (EnvVar, resolved at run time)."""
        values: dict = {}
        for name, variable in ENVIRONMENT.items():
            if os.environ.get(variable):
                values[name] = EnvVar.int(variable) if name in _INTS else EnvVar(variable)
        return cls(**values)

    def settings(self) -> AlertSettings:
        return AlertSettings(
            webhook_url=self.webhook_url.strip(),
            smtp_host=self.smtp_host.strip(),
            smtp_port=int(self.smtp_port),
            smtp_user=self.smtp_user,
            smtp_password=self.smtp_password,
            smtp_starttls=_flag(self.smtp_starttls),
            email_from=self.email_from,
            email_to=tuple(a.strip() for a in self.email_to.split(",") if a.strip()),
            dry_run=_flag(self.dry_run),
            max_per_hour=max(1, int(self.max_per_hour)),
        )

    @property
    def enabled(self) -> bool:
        return self.settings().enabled

    def base_url(self) -> str:
        return (self.dagster_url or DEFAULT_DAGSTER_URL).rstrip("/")

    def outbox(self) -> Outbox:
        return Outbox(self.settings(), data_root(self.data_dir) / "alerts")

    def post(self, alerts: list[Alert]) -> PostReport:
        return self.outbox().post(alerts)
