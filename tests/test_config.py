"""Unit tests of settings loading: TOML file, GATEWAY_* environment overrides, validation."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gateway.config import (
    AdminSettings,
    ConfigError,
    IngestSettings,
    KafkaSettings,
    LogSettings,
    Settings,
    load_settings,
)


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "conf" / "gateway.toml"


def load_text(path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    return load_settings(write_config(path, text), environ=environ or {})


# --- defaults ------------------------------------------------------------------------------


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={})
    assert settings.ingest == IngestSettings()
    assert settings.admin == AdminSettings()
    assert settings.kafka == KafkaSettings()
    assert settings.log == LogSettings()
    assert settings.ingest.port == 8080
    assert settings.ingest.max_request_bytes == 4 * 1024 * 1024
    assert settings.ingest.max_event_bytes == 32 * 1024
    assert settings.ingest.max_batch_events == 2500
    assert settings.ingest.cors_origins == ("*",)
    assert settings.kafka.events_topic == "events"
    assert settings.kafka.quarantine_topic == "events.quarantine"
    assert settings.kafka.acks == "all"
    assert settings.kafka.compression in ("zstd", "lz4")
    # Relative default paths resolve against the working directory when there is no file.
    assert settings.plans.source == "local"
    assert settings.plans.cache_dir == str(tmp_path / "data" / "plans")
    assert settings.catalog.database_url == f"sqlite:///{tmp_path / 'data' / 'catalog.db'}"


def test_process_environment_is_read_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    assert load_settings().kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"


# --- TOML file -----------------------------------------------------------------------------


def test_file_values(config_file: Path) -> None:
    settings = load_text(
        config_file,
        """
[ingest]
host = "127.0.0.1"
port = 9000
max_request_bytes = 1048576
max_batch_events = 100
ack_timeout_s = 3
cors_origins = ["https://a.example", "https://b.example"]

[admin]
port = 9001
tokens = ["t1"]

[kafka]
bootstrap_servers = "broker:9093"
events_topic = "ev"
quarantine_topic = "ev.q"
acks = "1"
idempotence = false
compression = "lz4"
linger_ms = 0

[plans]
source = "https://admin.example:8081"
refresh_interval_s = 2.5
token = "secret"

[catalog]
database_url = "postgresql://db/catalog"

[log]
level = "DEBUG"
format = "json"
""",
    )
    assert settings.ingest.host == "127.0.0.1"
    assert settings.ingest.port == 9000
    assert settings.ingest.max_request_bytes == 1048576
    assert settings.ingest.max_batch_events == 100
    assert settings.ingest.ack_timeout_s == 3.0
    assert isinstance(settings.ingest.ack_timeout_s, float)
    assert settings.ingest.cors_origins == ("https://a.example", "https://b.example")
    assert settings.ingest.max_event_bytes == 32 * 1024  # untouched default
    assert settings.admin.port == 9001
    assert settings.admin.tokens == ("t1",)
    assert settings.kafka.bootstrap_servers == "broker:9093"
    assert (settings.kafka.events_topic, settings.kafka.quarantine_topic) == ("ev", "ev.q")
    assert settings.kafka.acks == "1"
    assert settings.kafka.idempotence is False
    assert settings.kafka.compression == "lz4"
    assert settings.kafka.linger_ms == 0
    assert settings.plans.source == "https://admin.example:8081"
    assert settings.plans.refresh_interval_s == 2.5
    assert settings.plans.token == "secret"
    assert settings.catalog.database_url == "postgresql://db/catalog"
    assert (settings.log.level, settings.log.format) == ("DEBUG", "json")


def test_single_string_for_a_list_setting(config_file: Path) -> None:
    settings = load_text(config_file, '[ingest]\ncors_origins = "https://only.example"\n')
    assert settings.ingest.cors_origins == ("https://only.example",)


def test_empty_file_gives_defaults(config_file: Path) -> None:
    settings = load_text(config_file, "")
    assert settings.ingest == IngestSettings()
    assert settings.kafka == KafkaSettings()


# --- environment overrides -----------------------------------------------------------------


def test_env_overrides_file(config_file: Path) -> None:
    settings = load_text(
        config_file,
        '[kafka]\nbootstrap_servers = "from-file:9092"\nclient_id = "file-client"\n',
        {"GATEWAY_KAFKA_BOOTSTRAP_SERVERS": "from-env:9092"},
    )
    assert settings.kafka.bootstrap_servers == "from-env:9092"
    assert settings.kafka.client_id == "file-client"


def test_env_list_int_float_values() -> None:
    settings = load_settings(
        None,
        environ={
            "GATEWAY_INGEST_CORS_ORIGINS": " https://a.example , https://b.example,, ",
            "GATEWAY_INGEST_PORT": "8090",
            "GATEWAY_INGEST_MAX_BATCH_EVENTS": "10",
            "GATEWAY_INGEST_ACK_TIMEOUT_S": "2.5",
            "GATEWAY_ADMIN_TOKENS": "tok1,tok2",
        },
    )
    assert settings.ingest.cors_origins == ("https://a.example", "https://b.example")
    assert settings.ingest.port == 8090
    assert settings.ingest.max_batch_events == 10
    assert settings.ingest.ack_timeout_s == 2.5
    assert settings.admin.tokens == ("tok1", "tok2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        (" True ", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_env_bool_values(text: str, expected: bool) -> None:
    settings = load_settings(None, environ={"GATEWAY_KAFKA_IDEMPOTENCE": text})
    assert settings.kafka.idempotence is expected


def test_gateway_config_variable_is_not_a_setting() -> None:
    settings = load_settings(None, environ={"GATEWAY_CONFIG": "/etc/gateway.toml"})
    assert settings.kafka == KafkaSettings()


def test_env_without_prefix_is_ignored() -> None:
    settings = load_settings(None, environ={"KAFKA_BOOTSTRAP_SERVERS": "x:1", "GATEWAYX": "1"})
    assert settings.kafka.bootstrap_servers == KafkaSettings().bootstrap_servers


# --- errors name the key -------------------------------------------------------------------


BAD_FILE_VALUES = [
    ("[ingest]\nprot = 8080\n", "ingest.prot"),
    ("[kafka]\nbootstrap_server = 'x:1'\n", "kafka.bootstrap_server"),
    ("[ingets]\nport = 8080\n", "ingets"),
    ("toplevel = 1\n", "toplevel"),
    ("ingest = 5\n", "ingest"),
    ("[ingest]\nport = '8080'\n", "ingest.port"),
    ("[ingest]\nport = true\n", "ingest.port"),
    ("[ingest]\nport = 80.5\n", "ingest.port"),
    ("[ingest]\nport = -1\n", "ingest.port"),
    ("[ingest]\nport = 70000\n", "ingest.port"),
    ("[admin]\nport = -5\n", "admin.port"),
    ("[ingest]\nmax_batch_events = 0\n", "ingest.max_batch_events"),
    ("[ingest]\nmax_request_bytes = -1\n", "ingest.max_request_bytes"),
    ("[ingest]\nack_timeout_s = 'soon'\n", "ingest.ack_timeout_s"),
    ("[ingest]\nack_timeout_s = 0\n", "ingest.ack_timeout_s"),
    ("[ingest]\ncors_origins = 5\n", "ingest.cors_origins"),
    ("[ingest]\ncors_origins = ['a', 1]\n", "ingest.cors_origins"),
    ("[kafka]\nacks = '2'\n", "kafka.acks"),
    ("[kafka]\nacks = 2\n", "kafka.acks"),
    ("[kafka]\nidempotence = 'yes'\n", "kafka.idempotence"),
    ("[kafka]\ncompression = 'brotli'\n", "kafka.compression"),
    ("[kafka]\nlinger_ms = -1\n", "kafka.linger_ms"),
    ("[kafka]\nsecurity_protocol = 'TLS'\n", "kafka.security_protocol"),
    ("[kafka]\nsasl_mechanism = 'GSSAPI'\n", "kafka.sasl_mechanism"),
    ("[kafka]\nbootstrap_servers = ['a:1', 'b:2']\n", "kafka.bootstrap_servers"),
    ("[kafka]\nquarantine_topic = 'events'\n", "kafka.quarantine_topic"),
    ("[plans]\nsource = 'ftp://plans.example'\n", "plans.source"),
    ("[plans]\nrefresh_interval_s = 0\n", "plans.refresh_interval_s"),
    ("[catalog]\ndatabase_url = 'mysql://db'\n", "catalog.database_url"),
    ("[log]\nlevel = 'loud'\n", "log.level"),
    ("[log]\nformat = 'xml'\n", "log.format"),
]


@pytest.mark.parametrize(("text", "key"), BAD_FILE_VALUES, ids=[key for _, key in BAD_FILE_VALUES])
def test_bad_file_value_names_the_key(config_file: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_text(config_file, text)


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"GATEWAY_KAFKA_BOOTSTRAP": "x:1"}, "GATEWAY_KAFKA_BOOTSTRAP"),
        ({"GATEWAY_INGETS_PORT": "1"}, "GATEWAY_INGETS_PORT"),
        ({"GATEWAY_PORT": "1"}, "GATEWAY_PORT"),
        ({"GATEWAY_INGEST_PORT": "80x"}, "ingest.port"),
        ({"GATEWAY_INGEST_PORT": ""}, "ingest.port"),
        ({"GATEWAY_INGEST_PORT": "-1"}, "ingest.port"),
        ({"GATEWAY_INGEST_PORT": "65536"}, "ingest.port"),
        ({"GATEWAY_INGEST_ACK_TIMEOUT_S": "ten"}, "ingest.ack_timeout_s"),
        ({"GATEWAY_KAFKA_IDEMPOTENCE": "maybe"}, "kafka.idempotence"),
        ({"GATEWAY_KAFKA_ACKS": "2"}, "kafka.acks"),
        ({"GATEWAY_KAFKA_COMPRESSION": "brotli"}, "kafka.compression"),
    ],
)
def test_bad_env_value_names_the_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(None, environ=environ)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[ingest]\nack_timeout_s = nan\n", "ingest.ack_timeout_s"),
        ("[plans]\nrefresh_interval_s = nan\n", "plans.refresh_interval_s"),
    ],
    ids=["ingest.ack_timeout_s", "plans.refresh_interval_s"],
)
def test_nan_in_file_is_not_a_positive_number(config_file: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_text(config_file, text)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf"])
def test_non_finite_env_number_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("ingest.ack_timeout_s")):
        load_settings(None, environ={"GATEWAY_INGEST_ACK_TIMEOUT_S": text})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape("nope.toml")):
        load_settings(missing, environ={})


def test_toml_syntax_error_is_a_config_error(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("gateway.toml")):
        load_text(config_file, "[ingest\nport = 1\n")


# --- relative paths ------------------------------------------------------------------------


def test_relative_plans_file_resolves_against_the_config_file(
    tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_text(
        config_file,
        '[plans]\nsource = "file:plans/snapshot.yaml"\ncache_dir = "cache"\n'
        '[catalog]\ndatabase_url = "sqlite:///db/catalog.db"\n',
    )
    conf_dir = config_file.parent.resolve()
    assert settings.plans.source == f"file:{conf_dir / 'plans' / 'snapshot.yaml'}"
    assert settings.plans.cache_dir == str(conf_dir / "cache")
    assert settings.catalog.database_url == f"sqlite:///{conf_dir / 'db' / 'catalog.db'}"


def test_relative_config_path_resolves_too(
    tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(config_file, '[plans]\nsource = "file:snap.json"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("conf/gateway.toml"), environ={})
    assert settings.plans.source == f"file:{config_file.parent.resolve() / 'snap.json'}"


def test_absolute_plans_file_and_urls_are_kept(tmp_path: Path, config_file: Path) -> None:
    absolute = tmp_path / "abs" / "plans.json"
    settings = load_text(config_file, f'[plans]\nsource = "file:{absolute}"\n')
    assert settings.plans.source == f"file:{absolute}"
    settings = load_text(config_file, '[plans]\nsource = "http://admin:8081"\n')
    assert settings.plans.source == "http://admin:8081"
