"""Start and stop a private Docker engine for the tests that need one.

:func:`start_dockerd` runs ``dockerd`` on its own unix socket with its own data, exec and
containerd namespaces (under a short directory in /tmp: unix socket paths are limited to
~107 bytes), with no bridge and no iptables rules, and returns once the engine answers.
A system dockerd, if any, is left alone. :func:`stop_dockerd` stops it by PID (SIGTERM, then
SIGKILL) and removes its directory.

:func:`busybox_rootfs` builds the smallest useful image (Debian's static busybox plus the
files given) as a tar archive for ``docker import``: no registry is needed.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from support.processes import wait_ready

__all__ = ("BUSYBOX", "DockerEngine", "DockerdUnavailable", "busybox_rootfs", "start_dockerd", "stop_dockerd")

BUSYBOX = Path("/bin/busybox")
"""Debian's busybox-static (``apt-get install -y busybox-static``)."""
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
_APPLETS = ("sh", "cat", "head", "httpd", "kill", "sleep", "touch")


class DockerdUnavailable(RuntimeError):
    """No Docker engine can be started here; the message says why."""


@dataclass
class DockerEngine:
    """A running private ``dockerd``."""

    proc: subprocess.Popen[bytes]
    root: Path
    host: str
    """Its endpoint, as ``DOCKER_HOST`` wants it: ``unix:///tmp/infd-.../docker.sock``."""

    @property
    def log(self) -> str:
        return (self.root / "dockerd.log").read_text(errors="replace")


def _answers(socket_path: Path) -> bool:
    transport = httpx.HTTPTransport(uds=str(socket_path))
    try:
        with httpx.Client(transport=transport, timeout=1.0) as client:
            return client.get("http://docker/_ping").text == "OK"
    except httpx.HTTPError:
        return False


def start_dockerd() -> DockerEngine:
    """Start a private ``dockerd`` and wait (bounded) until it answers ``/_ping``.

    Raises:
        DockerdUnavailable: ``dockerd`` is not installed, or it exited or did not answer;
            the message holds the end of its log.
    """
    binary = shutil.which("dockerd")
    if binary is None:
        raise DockerdUnavailable("dockerd is not installed (apt-get install -y docker.io)")
    root = Path(tempfile.mkdtemp(prefix="infd-", dir="/tmp"))
    socket_path = root / "docker.sock"
    config = root / "daemon.json"
    config.write_text("{}")  # not /etc/docker/daemon.json: nothing of the system's setup applies
    with (root / "dockerd.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--host=unix://{socket_path}",
                f"--config-file={config}",
                f"--data-root={root / 'data'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'dockerd.pid'}",
                "--containerd-namespace=infernet-test",
                "--containerd-plugins-namespace=infernet-test-plugins",
                "--storage-driver=vfs",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    engine = DockerEngine(proc, root, f"unix://{socket_path}")
    if wait_ready(proc, lambda: socket_path.exists() and _answers(socket_path), START_TIMEOUT, 0.1):
        return engine
    tail = " | ".join(engine.log.strip().splitlines()[-5:])
    stop_dockerd(engine)
    raise DockerdUnavailable(f"dockerd did not start (exit status {proc.returncode}): {tail}")


def stop_dockerd(engine: DockerEngine) -> None:
    """Stop the engine by PID (SIGTERM, then SIGKILL), unmount what it left mounted under its
    directory (its network namespace handle), and remove the directory."""
    proc = engine.proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    for mount_point in sorted(_mounts_under(engine.root), reverse=True):
        subprocess.run(["umount", "--lazy", mount_point], check=False, capture_output=True)
    shutil.rmtree(engine.root, ignore_errors=True)


def _mounts_under(root: Path) -> list[str]:
    prefix = f"{root}/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return [point for point in points if point.startswith(prefix)]


def busybox_rootfs(files: Mapping[str, str]) -> bytes:
    """A root filesystem tar holding /bin/busybox, its applets ``sh``, ``httpd``, ... as
    symlinks, an empty /tmp, and ``files`` (path -> text; all made executable)."""
    if not BUSYBOX.exists() or _dynamically_linked(BUSYBOX):
        raise FileNotFoundError(f"{BUSYBOX} is missing or not static: apt-get install -y busybox-static")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        parents = {str(parent) for path in files for parent in Path(path.lstrip("/")).parents if str(parent) != "."}
        for directory in sorted({"bin", "tmp", *parents}):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in _APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _dynamically_linked(path: Path) -> bool:
    """True if the ELF64 executable at ``path`` names a program interpreter (PT_INTERP)."""
    data = path.read_bytes()
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 3 for i in range(phnum))
