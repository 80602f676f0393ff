"""config.example.toml documents every setting with its default, and cannot rot.

Adding a setting to gateway/config.py without adding it to the example fails here, and so does
an example value that drifts from the dataclass default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from gateway.config import ENV_PREFIX, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def _defaults_resolved_under(base_dir: Path) -> Settings:
    """The dataclass defaults, with their relative paths made relative to ``base_dir``."""
    defaults = Settings()
    sqlite_prefix = "sqlite:///"
    assert defaults.plans.source == "local"  # not a path: nothing to resolve
    assert defaults.catalog.database_url.startswith(sqlite_prefix)
    plans = dataclasses.replace(defaults.plans, cache_dir=str(base_dir / defaults.plans.cache_dir))
    catalog = dataclasses.replace(
        defaults.catalog,
        database_url=sqlite_prefix
        + str(base_dir / defaults.catalog.database_url.removeprefix(sqlite_prefix)),
    )
    return dataclasses.replace(defaults, plans=plans, catalog=catalog)


def test_example_loads_to_the_defaults() -> None:
    loaded = load_settings(EXAMPLE, environ={})
    assert loaded == _defaults_resolved_under(EXAMPLE.parent)


def test_example_lists_every_setting() -> None:
    with EXAMPLE.open("rb") as fh:
        doc = tomllib.load(fh)
    expected = {
        section.name: {f.name for f in dataclasses.fields(getattr(Settings(), section.name))}
        for section in dataclasses.fields(Settings)
    }
    assert set(doc) == set(expected), "sections of config.example.toml"
    for section, keys in expected.items():
        missing = sorted(keys - set(doc[section]))
        assert not missing, f"config.example.toml lacks [{section}] {', '.join(missing)}"


def test_example_names_the_environment_form() -> None:
    text = EXAMPLE.read_text()
    assert f"{ENV_PREFIX}<SECTION>_<KEY>" in text
    assert f"{ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS" in text
    for section in dataclasses.fields(Settings):
        assert f"{ENV_PREFIX}{section.name.upper()}_<KEY>" in text
