"""Settings: one TOML file plus ``GATEWAY_<SECTION>_<KEY>`` environment overrides.

Settings are loaded once at startup into frozen dataclasses and passed to constructors; nothing
deeper in the code reads the environment. Every problem — an unknown key, a value of the wrong
type, a value out of range — is a :class:`ConfigError` that names the key, so a typo fails the
start instead of silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

ENV_PREFIX = "GATEWAY_"
# plans.source value: the snapshot is built from this process's own catalog store.
LOCAL_SOURCE = "local"
# Environment variables with the prefix that are not settings overrides.
ENV_NOT_SETTINGS = frozenset({"GATEWAY_CONFIG"})


class ConfigError(Exception):
    """A configuration problem; the message names the offending key."""


class Role(StrEnum):
    """What a process serves: ``all`` (default), ``ingest`` (data plane) or ``admin``."""

    ALL = "all"
    INGEST = "ingest"
    ADMIN = "admin"


@dataclass(frozen=True)
class IngestSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    max_request_bytes: int = 4 * 1024 * 1024
    max_event_bytes: int = 32 * 1024
    # Violations listed in detail per request; invalid events beyond it are quarantined unlisted.
    max_request_violations: int = 10_000
    max_batch_events: int = 2500
    max_inflight_events: int = 20000
    # Worker processes sharing the ingest port (SO_REUSEPORT); 1 = serve in the main process.
    workers: int = 1
    # How long a request waits for Kafka to acknowledge its events before answering 503.
    ack_timeout_s: float = 10.0
    cors_origins: tuple[str, ...] = ("*",)
    # Time for a request's headers and whole body to arrive, from its first byte (then 408).
    read_timeout_s: float = 30.0
    # Idle keep-alive connections are closed after this long; longer than the 60 s idle timeout
    # of common load balancers, so the balancer, not the gateway, closes a shared connection.
    keepalive_timeout_s: float = 75.0
    # Bytes of request bodies being read or inflated plus events awaiting Kafka (then 429).
    max_inflight_bytes: int = 256 * 1024 * 1024
    # Peers whose X-Forwarded-For is believed (networks). Loopback: a proxy on this machine.
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Serve /metrics and /openapi.json on the ingest port too (see [metrics] for a separate one).
    serve_metrics_and_openapi: bool = True
    # The URL browsers reach this port at (e.g. "https://collect.example.com"): where the SDK
    # settings documents send events. "" = from each request's Host and scheme.
    public_url: str = ""

    def validate(self) -> None:
        _positive("ingest.max_request_bytes", self.max_request_bytes)
        _positive("ingest.max_event_bytes", self.max_event_bytes)
        _positive("ingest.max_request_violations", self.max_request_violations)
        _positive("ingest.max_batch_events", self.max_batch_events)
        _positive("ingest.max_inflight_events", self.max_inflight_events)
        _positive("ingest.workers", self.workers)
        _positive("ingest.ack_timeout_s", self.ack_timeout_s)
        _positive("ingest.read_timeout_s", self.read_timeout_s)
        _positive("ingest.keepalive_timeout_s", self.keepalive_timeout_s)
        _positive("ingest.max_inflight_bytes", self.max_inflight_bytes)
        if self.max_inflight_bytes < self.max_request_bytes:
            raise ConfigError(
                f"ingest.max_inflight_bytes: must be at least ingest.max_request_bytes "
                f"({self.max_request_bytes}), got {self.max_inflight_bytes}"
            )
        _networks("ingest.trusted_proxies", self.trusted_proxies)
        _port("ingest.port", self.port)
        if self.public_url:
            url = urlsplit(self.public_url)
            if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
                raise ConfigError(
                    "ingest.public_url: must be an http(s) URL without query or fragment, e.g. "
                    f'"https://collect.example.com", got {self.public_url!r}'
                )


@dataclass(frozen=True)
class AdminSettings:
    host: str = "127.0.0.1"
    port: int = 8081
    # Full rights on the admin API.
    tokens: tuple[str, ...] = ()
    # May read GET /internal/v1/snapshot and nothing else: what ingest replicas hold
    # (their plans.token), so a compromised replica can neither change the catalog nor read it.
    snapshot_tokens: tuple[str, ...] = ()
    # As ingest.read_timeout_s / ingest.keepalive_timeout_s, for the admin and metrics ports.
    read_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    # Segment API rate limits, per token: every request, and listing a plan's rules.
    segment_requests_per_minute: int = 3000
    segment_rules_requests_per_minute: int = 200

    def validate(self) -> None:
        _port("admin.port", self.port)
        _positive("admin.segment_requests_per_minute", self.segment_requests_per_minute)
        _positive("admin.segment_rules_requests_per_minute", self.segment_rules_requests_per_minute)
        _positive("admin.read_timeout_s", self.read_timeout_s)
        _positive("admin.keepalive_timeout_s", self.keepalive_timeout_s)
        if set(self.tokens) & set(self.snapshot_tokens):
            raise ConfigError(
                "admin.snapshot_tokens: a token is also in admin.tokens; a token has one scope"
            )


@dataclass(frozen=True)
class MetricsSettings:
    """A listener serving only ``/metrics`` and ``/health/*``, apart from the public port."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9464

    def validate(self) -> None:
        _port("metrics.port", self.port)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "tracking-gateway"
    events_topic: str = "events"
    quarantine_topic: str = "events.quarantine"
    # "Violation Generated" records, one per violation (gateway.publish.violations); "" = off.
    violations_topic: str = ""
    acks: str = "all"
    idempotence: bool = True
    compression: str = "zstd"
    linger_ms: int = 5
    max_batch_bytes: int = 1024 * 1024
    request_timeout_ms: int = 30000
    create_topics: bool = True
    topic_partitions: int = 3
    topic_replication_factor: int = 1
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_check_hostname: bool = True

    def validate(self) -> None:
        _choice("kafka.acks", self.acks, ("all", "1", "0"))
        _choice("kafka.compression", self.compression, ("none", "gzip", "snappy", "lz4", "zstd"))
        _choice(
            "kafka.security_protocol",
            self.security_protocol,
            ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        )
        uses_sasl = self.security_protocol.startswith("SASL_")
        if uses_sasl:
            _choice(
                "kafka.sasl_mechanism",
                self.sasl_mechanism,
                ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
            )
            if not self.sasl_username or not self.sasl_password:
                raise ConfigError(
                    f"kafka.sasl_username / kafka.sasl_password: required with "
                    f"security_protocol {self.security_protocol}"
                )
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password:
            raise ConfigError(
                "kafka.sasl_mechanism: SASL settings need security_protocol SASL_PLAINTEXT "
                f"or SASL_SSL, not {self.security_protocol}"
            )
        if self.idempotence and self.acks != "all":
            raise ConfigError(
                f'kafka.acks: the idempotent producer needs acks = "all", not {self.acks!r} '
                "(or set kafka.idempotence = false)"
            )
        if self.linger_ms < 0:
            raise ConfigError("kafka.linger_ms: must be >= 0")
        _positive("kafka.max_batch_bytes", self.max_batch_bytes)
        _positive("kafka.request_timeout_ms", self.request_timeout_ms)
        _positive("kafka.topic_partitions", self.topic_partitions)
        _positive("kafka.topic_replication_factor", self.topic_replication_factor)
        if not self.events_topic or not self.quarantine_topic:
            raise ConfigError("kafka.events_topic / kafka.quarantine_topic: must not be empty")
        if self.events_topic == self.quarantine_topic:
            raise ConfigError("kafka.quarantine_topic: must differ from kafka.events_topic")
        if self.violations_topic in (self.events_topic, self.quarantine_topic):
            raise ConfigError(
                "kafka.violations_topic: must differ from kafka.events_topic and "
                "kafka.quarantine_topic"
            )


@dataclass(frozen=True)
class PlansSettings:
    # Where the plan snapshot comes from: "local" (this process's catalog; role all),
    # "file:path.json|.yaml" (plans as code) or "http(s)://admin-host:port" (an admin replica).
    source: str = "local"
    refresh_interval_s: float = 10.0
    cache_dir: str = "data/plans"
    # Bearer token sent to an http(s) snapshot source.
    token: str = ""

    def validate(self) -> None:
        if self.source != LOCAL_SOURCE and not self.source.startswith(
            ("file:", "http://", "https://")
        ):
            raise ConfigError(
                f"plans.source: {self.source!r} is not 'local', 'file:PATH' or an http(s):// URL"
            )
        _positive("plans.refresh_interval_s", self.refresh_interval_s)


MAX_PINNED_VERSIONS = 100


@dataclass(frozen=True)
class CatalogSettings:
    database_url: str = "sqlite:///data/catalog.db"
    # How many versions before the current one of each connected plan the snapshot carries,
    # for events pinned to one by RudderTyper (context.ruddertyper); 0: none.
    pinned_versions: int = 10

    def validate(self) -> None:
        if not self.database_url.startswith(("sqlite:", "postgresql:", "postgres:")):
            raise ConfigError("catalog.database_url: must be a sqlite:/// or postgresql:// URL")
        if not 0 <= self.pinned_versions <= MAX_PINNED_VERSIONS:
            raise ConfigError(f"catalog.pinned_versions: must be 0 to {MAX_PINNED_VERSIONS}")


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    format: str = "text"

    def validate(self) -> None:
        _choice("log.level", self.level.lower(), ("debug", "info", "warning", "error"))
        _choice("log.format", self.format, ("text", "json"))


@dataclass(frozen=True)
class Settings:
    ingest: IngestSettings = field(default_factory=IngestSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    plans: PlansSettings = field(default_factory=PlansSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()

    def check_role(self, role: Role) -> None:
        """Settings that cannot work together with the role a process serves.

        Checked by ``gateway serve`` before anything starts — a worker process that met the
        problem later would only exit and be restarted.
        """
        if role is Role.INGEST and self.plans.source == LOCAL_SOURCE:
            raise ConfigError(
                'plans.source: "local" needs the catalog in this process (--role all); an '
                "ingest replica reads the admin role's snapshot: set plans.source = "
                '"http://ADMIN-HOST:PORT" and plans.token (one of the admin side\'s '
                "admin.snapshot_tokens)"
            )
        if role is Role.ALL and self.ingest.port == self.admin.port != 0:
            raise ConfigError(
                f"admin.port: the same as ingest.port ({self.ingest.port}); role all serves both"
            )
        # The metrics listener runs where ingest does. On a shared port, with ingest.workers > 1
        # (SO_REUSEPORT) the kernel would hand SDK connections to it; with one process the start
        # would fail.
        if self.metrics.enabled and role is not Role.ADMIN and self.metrics.port != 0:
            taken = {"ingest.port": self.ingest.port}
            if role is Role.ALL:
                taken["admin.port"] = self.admin.port
            for key, port in taken.items():
                if port == self.metrics.port:
                    raise ConfigError(
                        f"metrics.port: the same as {key} ({port}); the metrics listener "
                        f"(metrics.enabled) needs a port of its own"
                    )


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (if any), apply environment overrides, validate."""
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        base_dir = path.resolve().parent
    env = os.environ if environ is None else environ
    sections: dict[str, Any] = {}
    for section_field in dataclasses.fields(Settings):
        section_cls = _section_type(section_field.name)
        raw = data.pop(section_field.name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{section_field.name}: must be a table")
        values = _build_section(section_field.name, section_cls, raw, env)
        sections[section_field.name] = values
    if data:
        raise ConfigError(f"unknown configuration section or key: {sorted(data)[0]}")
    _reject_unknown_env(env)
    settings = Settings(**sections)
    settings.validate()
    return _resolve_paths(settings, base_dir)


def _section_type(name: str) -> type[Any]:
    hint = get_type_hints(Settings)[name]
    assert isinstance(hint, type)
    return hint


def _build_section(
    section: str, cls: type[Any], raw: dict[str, Any], env: Mapping[str, str]
) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown configuration key: {section}.{key}")
    values: dict[str, Any] = {}
    for name in known:
        env_name = f"{ENV_PREFIX}{section.upper()}_{name.upper()}"
        if env_name in env:
            values[name] = _from_env(f"{section}.{name}", hints[name], env[env_name])
        elif name in raw:
            values[name] = _coerce(f"{section}.{name}", hints[name], raw[name])
    return cls(**values)


def _reject_unknown_env(env: Mapping[str, str]) -> None:
    valid = set(ENV_NOT_SETTINGS)
    for section_field in dataclasses.fields(Settings):
        for f in dataclasses.fields(_section_type(section_field.name)):
            valid.add(f"{ENV_PREFIX}{section_field.name.upper()}_{f.name.upper()}")
    for name in env:
        if name.startswith(ENV_PREFIX) and name not in valid:
            raise ConfigError(f"unknown configuration environment variable: {name}")


def _coerce(key: str, hint: Any, value: Any) -> Any:
    origin = get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if origin in (Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # pragma: no cover


def _from_env(key: str, hint: Any, text: str) -> Any:
    """Environment values are strings: parse them into the setting's type."""
    if get_origin(hint) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {text!r}")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {text!r}") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {text!r}") from None
    return text


def _resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    """Relative paths are relative to the config file (the working directory without one).

    This holds for paths set through the environment too: one rule, wherever a value comes from.
    """
    plans = settings.plans
    source = plans.source
    if source.startswith("file:"):
        source = "file:" + str(_under(base_dir, source[len("file:") :]))
    plans = dataclasses.replace(
        plans, source=source, cache_dir=str(_under(base_dir, plans.cache_dir))
    )
    catalog = settings.catalog
    prefix = "sqlite:///"
    if catalog.database_url.startswith(prefix):
        db_path = _under(base_dir, catalog.database_url[len(prefix) :])
        catalog = dataclasses.replace(catalog, database_url=prefix + str(db_path))
    kafka = settings.kafka
    kafka = dataclasses.replace(
        kafka,
        ssl_cafile=_under_if_set(base_dir, kafka.ssl_cafile),
        ssl_certfile=_under_if_set(base_dir, kafka.ssl_certfile),
        ssl_keyfile=_under_if_set(base_dir, kafka.ssl_keyfile),
    )
    return dataclasses.replace(settings, plans=plans, catalog=catalog, kafka=kafka)


def _under(base_dir: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def _under_if_set(base_dir: Path, path: str) -> str:
    return str(_under(base_dir, path)) if path else ""


def _positive(key: str, value: float) -> None:
    if not (0 < value < math.inf):  # also rejects NaN
        raise ConfigError(f"{key}: must be > 0, got {value!r}")


def _networks(key: str, values: tuple[str, ...]) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not an IP network (e.g. 10.0.0.0/8)") from None


def _port(key: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{key}: must be a TCP port (0-65535), got {value!r}")


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: must be one of {', '.join(allowed)}; got {value!r}")
