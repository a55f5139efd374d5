"""ATOM's live system: model actors and their supervisor, the gateway, and the pure core.

Names are imported on first use (PEP 562), so that `import atom_actors.answers` and the replay
tool load neither pykka nor aiohttp.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalog import ModelSpec
    from .config import Config, ConfigError, load_config
    from .gateway import Gateway
    from .principal import Principal, Role
    from .request import GatewayError, ProcessRequest, ProcessResult
    from .system import ActorSystem

_WHERE = {
    "ActorSystem": "system",
    "Config": "config",
    "ConfigError": "config",
    "Gateway": "gateway",
    "GatewayError": "request",
    "ModelSpec": "catalog",
    "Principal": "principal",
    "ProcessRequest": "request",
    "ProcessResult": "request",
    "Role": "principal",
    "load_config": "config",
}

__all__ = [
    "ActorSystem",
    "Config",
    "ConfigError",
    "Gateway",
    "GatewayError",
    "ModelSpec",
    "Principal",
    "ProcessRequest",
    "ProcessResult",
    "Role",
    "load_config",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'atom_actors' has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
