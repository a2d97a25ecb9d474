"""Container clients: how the node reaches the containers it runs jobs on."""

from .base import ContainerClient
from .http import HttpContainer
from .local import ContainerFunction, LocalContainer, Resources, echo

__all__ = ("ContainerClient", "ContainerFunction", "HttpContainer", "LocalContainer", "Resources", "echo")
