"""ATOM's HTTP server: the aiohttp application, its routes, and `atom serve`.

Names are imported on first use (PEP 562): `atom` starts in `api.cli`, and `atom replay` must
not load aiohttp.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .routing import Route
    from .services import Limits, Services, build_services

_WHERE = {
    "Limits": "services",
    "Route": "routing",
    "Services": "services",
    "build_services": "services",
    "create_app": "app",
}

__all__ = ["Limits", "Route", "Services", "build_services", "create_app"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'api' has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
