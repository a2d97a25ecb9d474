"""What the Docker tests share: the test image and the config of a container made from it.

The image is a busybox root filesystem (see ``support.dockerd.busybox_rootfs``) imported
under a name whose registry is ``127.0.0.1:1``, where nothing listens: every pull fails at
once, so the node always falls back to the local copy, and no test needs a registry.

``/serve PORT`` runs busybox ``httpd`` on ``127.0.0.1:PORT`` (containers use the host's
network, so all traffic stays on loopback). Its CGI ``/cgi-bin/service_output`` answers
``{"greeting": $GREETING, "input": <the request body>}`` and ``/cgi-bin/service-resources``
answers ``{"query": <the query string>}``, so a container's ``url`` is
``http://127.0.0.1:PORT/cgi-bin``. After a restart (a marker file survives in the container)
``/serve`` first sleeps ``$RESTART_DELAY`` seconds, which keeps a restarted container down
long enough to observe.
"""

from __future__ import annotations

from typing import Any

IMAGE = "127.0.0.1:1/infernet-test/busybox:1"
"""The test image: only ever local (its registry does not exist)."""
MISSING_IMAGE = "127.0.0.1:1/infernet-test/missing:1"
"""An image that is neither pullable nor local."""

SERVE = """#!/bin/sh
trap 'exit 0' TERM INT
if [ -e /tmp/started ]; then sleep "${RESTART_DELAY:-0}" & wait $!; fi
touch /tmp/started
httpd -f -p "127.0.0.1:$1" -h /www &
trap 'kill $!; exit 0' TERM INT
wait
"""

SERVICE_OUTPUT = """#!/bin/sh
body=$(head -c "${CONTENT_LENGTH:-0}")
printf 'Content-Type: application/json\\r\\n\\r\\n'
printf '{"greeting":"%s","input":%s}' "$GREETING" "$body"
"""

SERVICE_RESOURCES = """#!/bin/sh
printf 'Content-Type: application/json\\r\\n\\r\\n'
printf '{"query":"%s"}' "$QUERY_STRING"
"""

IMAGE_FILES = {
    "/serve": SERVE,
    "/www/cgi-bin/service_output": SERVICE_OUTPUT,
    "/www/cgi-bin/service-resources": SERVICE_RESOURCES,
}


def service(container_id: str, port: int, *, listen: int | None = None, **extra: Any) -> dict[str, Any]:
    """The config entry of a managed container of the test image, reached on ``port``.

    ``listen`` is the port the service really listens on (default ``port``); make it differ
    for a container that never answers. ``extra`` keys are added (``env``, ``image``, ...).
    """
    return {
        "id": container_id,
        "image": IMAGE,
        "command": f"/serve {listen if listen is not None else port}",
        "port": port,
        "url": f"http://127.0.0.1:{port}/cgi-bin",
        "network_mode": "host",
        **extra,
    }


def expected_output(greeting: str, data: Any) -> dict[str, Any]:
    """What the test service answers an off-chain job's call with."""
    return {
        "greeting": greeting,
        "input": {"source": 1, "destination": 1, "data": data, "requires_proof": False},
    }
