"""infernet_asgi: a framework-free ASGI application over an infernet_core Node."""

from .app import InfernetApp
from .routing import route_path

__all__ = ("InfernetApp", "route_path")
