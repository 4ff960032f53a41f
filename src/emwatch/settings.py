"""Service configuration: one pydantic-settings class, every field from `EMWATCH_*`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All settings of the service; each has a default and can be set as `EMWATCH_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="EMWATCH_", extra="ignore")

    mqtt_url: str | None = Field(
        None, description="Broker, e.g. mqtt://user:pass@host:1883. Unset: start a local broker."
    )
    database_url: str | None = Field(
        None, description="PostgreSQL DSN. Unset: start a local PostgreSQL under data_dir."
    )
    data_dir: Path = Field(Path(".emwatch"), description="Where embedded servers keep their data.")
    http_host: str = Field("127.0.0.1", description="HTTP/WebSocket listen address.")
    http_port: int = Field(8000, description="HTTP/WebSocket listen port.")
    mqtt_client_id: str = Field("emwatch-ingest", description="MQTT client id (persistent session key).")
    mqtt_client: Literal["gmqtt", "aiomqtt"] = Field(
        "gmqtt", description="MQTT library of the ingest source (gmqtt: ~1/3 of aiomqtt's CPU per message)."
    )
    topic_prefix: str = Field("em/v1", description="Root of the wire-protocol topics.")
    batch_max_fixes: int = Field(2_000, description="Flush a micro-batch at this many fixes...")
    batch_max_ms: int = Field(50, description="...or this many milliseconds after its first fix.")
    queue_max_batches: int = Field(16, description="Bound of the queue between batching and evaluation.")
    max_payload_bytes: int = Field(1_048_576, description="Larger MQTT payloads are dead-lettered unparsed.")
    max_future_s: int = Field(300, description="A fix timestamped further in the future is rejected.")
    max_age_s: int = Field(7 * 86_400, description="A fix older than this is rejected.")
    h3_resolution: int = Field(
        9, ge=0, le=15, description="H3 resolution of stored fix cells and zone index."
    )
    # A national burst (a county's inclusion zone edited wrongly, a curfew hour) raises tens of thousands
    # of alerts within a second; a client that is merely busy for that second must not be cut off.
    feed_queue_max: int = Field(
        100_000, description="Events buffered per WebSocket client; past it the client is closed to resume."
    )
    publish_alerts_mqtt: bool = Field(
        True, description="Also publish alerts on em/v1/alerts/{jur}/{subject}."
    )
    log_level: str = Field("INFO", description="Python logging level.")
    retention_days: int = Field(
        365, ge=1, description="Fixes older than this are purged by `emwatch purge` (jurisdictions override)."
    )
    retention_hold_margin_s: int = Field(
        3600, ge=0, description="A legal hold keeps its subject's fixes this long before and after the alert."
    )
    # -- rules (issue: the full supervision rule set) --
    zone_open_fixes: int = Field(
        2, ge=1, description="Consecutive breaching fixes before a zone alert opens..."
    )
    zone_open_s: float = Field(60.0, ge=0, description="...or this many seconds in breach (0: count only).")
    zone_clear_fixes: int = Field(
        3, ge=1, description="Consecutive compliant fixes before a zone alert clears..."
    )
    zone_clear_s: float = Field(120.0, ge=0, description="...or this many seconds back in compliance.")
    silence_limit_s: dict[str, float] = Field(
        {"high": 300.0, "medium": 900.0, "low": 1800.0},
        description="脱管: a bracelet silent longer than this (by risk level) raises signal_lost.",
    )
    max_speed_kmh: float = Field(250.0, gt=0, description="Faster implied movement marks a fix suspect.")
    kernel_threads: int = Field(
        1, ge=0, le=64,
        description="Threads the compiled hot path splits a batch over; 0: one per core (≤ 4). See README.",
    )
    rules_tick_s: float = Field(
        5.0, gt=0, description="How often clock rules (signal_lost, curfew) run over all devices."
    )
    bootstrap_admin: str | None = Field(
        None, description="`user:password` of an admin created at start when no such user exists yet."
    )
    jwt_secret: SecretStr | None = Field(
        None, description="HMAC key signing tokens. Unset: random per process (logins end on restart)."
    )
    totp_keys: SecretStr | None = Field(
        None,
        description="Fernet keys (comma-separated, newest first) sealing TOTP secrets at rest (unset: not).",
    )
    access_token_ttl_s: int = Field(900, ge=10, description="Lifetime of an access token.")
    login_max_failures: int = Field(5, ge=1, description="Failed logins of one username before a lockout...")
    login_ip_max_failures: int = Field(
        20, ge=1, description="...or from one client address (an office may share one NAT address)."
    )
    login_lockout_s: float = Field(30.0, gt=0, description="First lockout; each more failure doubles it...")
    login_lockout_max_s: float = Field(3600.0, gt=0, description="...up to this.")
    login_failure_window_s: float = Field(
        900.0, gt=0, description="Failures are forgotten this long after the last one."
    )
    api_rate_per_s: float = Field(
        200.0, ge=0, description="Sustained API requests per second per client address (0: unlimited)..."
    )
    api_burst: int = Field(2000, ge=1, description="...with bursts up to this many requests.")
    refresh_token_ttl_s: int = Field(12 * 3600, ge=60, description="Lifetime of a single-use refresh token.")
    escalate_after_min: dict[str, float] = Field(
        {"critical": 5.0, "serious": 15.0, "warning": 60.0},
        description="Unacknowledged this long (per severity), an alert escalates one jurisdiction level up.",
    )
    escalation_check_s: float = Field(15.0, gt=0, description="How often unacknowledged alerts are checked.")
    map_tile_url: str | None = Field(
        None, description="Map tile URL template for the page, e.g. https://tile.example/{z}/{x}/{y}.png."
    )
    # -- officer notifications (issue 7) --
    vapid_private_key: SecretStr | None = Field(
        None, description="Web Push VAPID private key (base64url raw or DER). Unset: random per process."
    )
    vapid_subject: str = Field(
        "mailto:emwatch@localhost", description="VAPID `sub` claim: how a push service reaches the operator."
    )
    notify_poll_s: float = Field(1.0, gt=0, description="How often the sender looks for due notifications.")
    # -- officer notifications, part 2 (issue 7: destination guard against SSRF) --
    notify_allow_http: bool = Field(
        False, description="Let push endpoints and webhooks be plain http:// (tests' loopback servers)."
    )
    notify_allowed_networks: list[IPvAnyNetwork] = Field(
        [], description="Private/loopback networks (CIDR) push endpoints and webhooks may reach anyway."
    )
    # -- MQTT over TLS (issue 8): folded into mqtt_url's query, where every broker client reads them --
    mqtt_tls_ca_file: Path | None = Field(
        None, description="CA certificate(s) that signed the broker's (mqtts:// URL). Unset: system CAs."
    )
    mqtt_tls_cert_file: Path | None = Field(
        None, description="Client certificate, if the broker asks for one..."
    )
    mqtt_tls_key_file: Path | None = Field(None, description="...and its private key (PEM).")
    mqtt_tls_verify_hostname: bool = Field(
        True, description="Check the broker certificate names the URL's host (the chain is always verified)."
    )
    # -- commit stage (issue 8, database outage): write buffer between evaluation and PostgreSQL --
    commit_buffer_max_batches: int = Field(
        64, ge=1, description="Evaluated batches awaiting commit before evaluation blocks (back-pressure)..."
    )
    commit_buffer_max_fixes: int = Field(
        200_000, ge=1, description="...or fixes awaiting commit, whichever bound is reached first."
    )
    uvloop: bool = Field(True, description="Run `serve` and `demo` on uvloop when it is installed.")
    commit_batches_per_transaction: int = Field(
        16, ge=1, description="Buffered batches one commit may write together when the database lags."
    )
    commit_writers: int = Field(
        2, ge=1, description="Write transactions in flight at once, each on its own connection: the next "
        "one's COPY overlaps this one's commit (they still commit in order).",
    )
    # -- service health (robustness: waiting for the database at start) --
    database_wait_max_s: float = Field(
        300.0, ge=0, description="At start, wait this long for PostgreSQL (retried, with backoff); 0: forever"
    )
    # Late fixes: the reorder horizon (docs/rules.md), for the rule engine, the episode book and the ledger.
    reorder_horizon_s: float = Field(
        300.0, gt=0, le=86_400,
        description="Late fixes this far behind their device's newest are replayed in event-time order.",
    )

    @model_validator(mode="after")
    def _fold_mqtt_tls(self) -> Settings:
        """Put the mqtt_tls_* settings into mqtt_url (options in the URL itself win) and load the TLS
        files now: a wrong path stops the service at start, not its MQTT consumer later."""
        files = (self.mqtt_tls_ca_file, self.mqtt_tls_cert_file, self.mqtt_tls_key_file)
        folded = any(f is not None for f in files) or not self.mqtt_tls_verify_hostname
        if not folded and not (self.mqtt_url or "").startswith(("mqtts:", "ssl:")):
            return self
        from emwatch.ingest.mqtt import BrokerAddress, BrokerConfigError, with_tls_options

        if self.mqtt_url is None:
            raise BrokerConfigError("EMWATCH_MQTT_TLS_* settings need EMWATCH_MQTT_URL=mqtts://host:port")
        try:
            if folded:
                ca, cert, key = (None if f is None else str(f) for f in files)
                verify = None if self.mqtt_tls_verify_hostname else False
                self.mqtt_url = with_tls_options(self.mqtt_url, ca_file=ca, cert_file=cert, key_file=key,
                                                 verify_hostname=verify)
            BrokerAddress.parse(self.mqtt_url).tls_context()
        except (ValueError, OSError) as exc:  # ssl.SSLError is an OSError
            raise BrokerConfigError(f"MQTT TLS settings: {exc}") from None
        return self
