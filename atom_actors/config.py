"""ATOM's configuration: one TOML file, validated at start, or the embedded defaults."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .budget import RESERVATION_TTL_S
from .catalog import ADMISSION, CAPABILITIES, PROVIDERS, ModelSpec, default_catalog


class ConfigError(ValueError):
    """The configuration is wrong; the message names the file, the model and the field."""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything ATOM reads at start."""

    db_path: str = "atom.db"
    """The event log's location: an SQLite file's path, or a postgresql:// URL."""
    durability: str = "full"
    host: str = "127.0.0.1"
    port: int = 8080
    models: tuple[ModelSpec, ...] = field(default_factory=tuple)
    source: str = "embedded defaults"
    reservation_ttl_s: float = RESERVATION_TTL_S
    """How long a reservation a crash left unsettled counts against its budgets."""


_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_REQUIRED = ("name", "provider", "model", "input_usd_per_mtok", "output_usd_per_mtok")
_MODEL_FIELDS = {f.name for f in fields(ModelSpec)}


def _where(source: str, model: str | None, key: str | None) -> str:
    parts = [source]
    if model is not None:
        parts.append(f"model {model!r}")
    if key is not None:
        parts.append(f"field {key!r}")
    return ": ".join(parts)


def _number(value: object, where: str, *, minimum: float = 0.0, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{where}: must be at least {minimum}, got {value!r}")
    return value


def _model(entry: object, index: int, source: str) -> ModelSpec:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{source}: models[{index}]: expected a table")
    name = entry.get("name")
    label = name if isinstance(name, str) and name else f"#{index + 1}"
    for key in entry:
        if key not in _MODEL_FIELDS:
            raise ConfigError(f"{_where(source, label, key)}: unknown field")
    for key in _REQUIRED:
        if key not in entry:
            raise ConfigError(f"{_where(source, label, key)}: missing")
    values: dict[str, Any] = {}
    for key in ("name", "provider", "model", "base_url", "api_key_env", "path", "admission"):
        if key in entry:
            value = entry[key]
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{_where(source, label, key)}: expected a non-empty string")
            values[key] = value
    if values["provider"] not in PROVIDERS:
        raise ConfigError(
            f"{_where(source, label, 'provider')}: {values['provider']!r} is not one of "
            f"{', '.join(sorted(PROVIDERS))}"
        )
    if values.get("admission", "queue") not in ADMISSION:
        raise ConfigError(f"{_where(source, label, 'admission')}: must be 'queue' or 'refuse'")
    if values["provider"] in ("llamacpp", "recorded") and "path" not in values:
        raise ConfigError(f"{_where(source, label, 'path')}: required for {values['provider']}")
    caps = entry.get("capabilities", ["text_generation"])
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ConfigError(f"{_where(source, label, 'capabilities')}: expected a list of strings")
    unknown = sorted(set(caps) - CAPABILITIES)
    if unknown:
        raise ConfigError(
            f"{_where(source, label, 'capabilities')}: unknown {', '.join(unknown)} "
            f"(known: {', '.join(sorted(CAPABILITIES))})"
        )
    values["capabilities"] = frozenset(caps)
    for key in ("input_usd_per_mtok", "output_usd_per_mtok"):
        values[key] = float(_number(entry[key], _where(source, label, key)))
    for key, default in (("context_window", 8192), ("max_concurrency", 8), ("max_queue", 256)):
        minimum = 0 if key == "max_queue" else 1
        values[key] = _number(
            entry.get(key, default), _where(source, label, key), minimum=minimum, integer=True
        )
    prior = float(_number(entry.get("quality_prior", 0.5), _where(source, label, "quality_prior")))
    if prior > 1.0:
        raise ConfigError(f"{_where(source, label, 'quality_prior')}: must be in [0, 1]")
    values["quality_prior"] = prior
    for key in ("max_output_tokens", "max_image_tokens"):
        if key in entry:
            values[key] = _number(entry[key], _where(source, label, key), minimum=1, integer=True)
    for key in ("timeout_connect_s", "timeout_first_token_s", "timeout_total_s"):
        if key in entry:
            values[key] = float(_number(entry[key], _where(source, label, key), minimum=0.001))
    return ModelSpec(**values)


def parse_config(document: Mapping[str, Any], source: str, defaults: Config) -> Config:
    """Validate a parsed TOML document; anything it leaves out comes from `defaults`."""
    for section in document:
        if section not in ("log", "server", "budgets", "models"):
            raise ConfigError(f"{source}: unknown section {section!r}")
    log = document.get("log", {})
    server = document.get("server", {})
    if not isinstance(log, Mapping) or not isinstance(server, Mapping):
        raise ConfigError(f"{source}: [log] and [server] must be tables")
    if "path" in log and "url" in log:
        raise ConfigError(f"{source}: log: fields 'path' and 'url': give one, not both")
    db_path = log.get("path", defaults.db_path)
    if not isinstance(db_path, str) or not db_path:
        raise ConfigError(f"{source}: log: field 'path': expected a non-empty string")
    if "url" in log:
        # The log in PostgreSQL, shared by every node that names it; `path` is an SQLite file.
        db_path = log["url"]
        if not isinstance(db_path, str) or not db_path.startswith(_POSTGRES_SCHEMES):
            raise ConfigError(
                f"{source}: log: field 'url': expected a postgresql:// URL, got {db_path!r}"
            )
    durability = log.get("durability", defaults.durability)
    if durability not in ("full", "normal"):
        raise ConfigError(f"{source}: log: field 'durability': must be 'full' or 'normal'")
    host = server.get("host", defaults.host)
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{source}: server: field 'host': expected a non-empty string")
    port = _number(server.get("port", defaults.port), f"{source}: server: field 'port'",
                   minimum=0, integer=True)  # fmt: skip
    budgets = document.get("budgets", {})
    if not isinstance(budgets, Mapping):
        raise ConfigError(f"{source}: [budgets] must be a table")
    for key in budgets:
        if key != "reservation_ttl_s":
            raise ConfigError(f"{source}: budgets: field {key!r}: unknown field")
    ttl = float(
        _number(
            budgets.get("reservation_ttl_s", defaults.reservation_ttl_s),
            f"{source}: budgets: field 'reservation_ttl_s'",
            minimum=1,
        )
    )
    entries = document.get("models")
    if entries is None:
        models = defaults.models
    else:
        if not isinstance(entries, list):
            raise ConfigError(f"{source}: models must be an array of tables ([[models]])")
        models = tuple(_model(entry, i, source) for i, entry in enumerate(entries))
        names = [m.name for m in models]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"{_where(source, name, 'name')}: defined twice")
    return Config(db_path, durability, host, port, models, source, ttl)


def load_config(path: str | None, *, local_model_path: str | None = None) -> Config:
    """Read and validate `path`; None gives the embedded defaults."""
    defaults = Config(models=default_catalog(local_model_path))
    if path is None:
        return defaults
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(document, path, defaults)
