"""ATOM's HTTP server: the aiohttp application, its routes, and `atom serve`."""

from .app import create_app
from .routing import Route
from .services import Limits, Services, build_services

__all__ = ["Limits", "Route", "Services", "build_services", "create_app"]
