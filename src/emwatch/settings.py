"""Service configuration: one pydantic-settings class, every field from `EMWATCH_*`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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
    mqtt_session_expiry_s: int = Field(86_400, description="How long the broker keeps our session offline.")
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
    feed_queue_max: int = Field(
        10_000, description="Events buffered per WebSocket client; past it the client is closed to resume."
    )
    publish_alerts_mqtt: bool = Field(
        True, description="Also publish alerts on em/v1/alerts/{jur}/{subject}."
    )
    log_level: str = Field("INFO", description="Python logging level.")
