"""Build the project's Docker image (the repository's ``Dockerfile``) with no registry and no
package index at build time.

* :func:`base_rootfs`: a Debian root filesystem (``debootstrap --variant=minbase
  --include=python3,python3-venv,ca-certificates``) as a tar for ``docker import``; it stands
  in for the official Python image the Dockerfile starts from by default. Made once (about a
  minute) from this machine's Debian mirror and cached under ``~/.cache/infernet-core``
  (``$XDG_CACHE_HOME``), keyed by the release; a file lock keeps concurrent sessions from
  making it twice.
* :func:`runtime_requirements`: the lines of ``requirements/test.lock`` (versions and hashes)
  for what the image installs: the project's dependencies with the extras asked for, their
  own dependencies, and the build backend (setuptools, wheel) the image builds the project
  with. :func:`dependency_wheels` downloads them, hash-checked, as wheels for the image's
  Python (cached by the requirements' digest).
* :func:`build_context`: the files the repository's ``.dockerignore`` lets into a build,
  plus that ``wheels/`` directory: the Dockerfile then installs from it with ``--no-index``.
* :func:`import_base`, :func:`build_image`: ``docker import`` and ``docker build`` through
  the SDK (the engine's classic builder is enough).

As a script, ``python tests/docker/image_support.py wheels DIR [EXTRAS]`` fills DIR with
those wheels: put them in ``wheels/`` of a checkout and ``docker build`` needs no index, and
installs exactly the versions the test suite runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.markers import default_environment
from packaging.requirements import Requirement

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

__all__ = (
    "REPO",
    "base_rootfs",
    "build_context",
    "build_image",
    "debian_mirror",
    "dependency_wheels",
    "import_base",
    "runtime_requirements",
)

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "test.lock"
RELEASE = "bookworm"
"""The Debian release of the test base: that of ``python:3.11-slim-bookworm``."""
TARGET_PYTHON = "3.11.2"
"""The Python of that release (its markers decide which dependencies the image needs)."""
PACKAGES = "python3,python3-venv,ca-certificates"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
ROOTFS_MAX_AGE = 30 * 86400.0
"""A cached root filesystem older than this (seconds) is made again, with today's updates."""
DEBOOTSTRAP_TIMEOUT = 300.0
DOWNLOAD_TIMEOUT = 300.0
BASE_ENV = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
"""What ``docker import`` adds, so the base looks like the official Python image."""
_TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/infernet-core`` (default ``~/.cache/infernet-core``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "infernet-core"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(args: Sequence[str | Path], timeout: float, what: str) -> None:
    """Run ``args`` in a session of its own; on a timeout kill that session (by its id)."""
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            [str(arg) for arg in args],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = None
        if status != 0:
            output.seek(0)
            tail = output.read().decode(errors="replace")[-3000:]
            outcome = f"timed out after {timeout:.0f}s" if status is None else f"exit status {status}"
            raise RuntimeError(f"{what} failed ({outcome}):\n{tail}")


def debian_mirror(release: str = RELEASE) -> str:
    """The Debian archive this machine's apt uses for ``release`` (``/etc/apt/sources.list``
    and ``sources.list.d``, one-line or deb822 format), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.suffix not in (".list", ".sources") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for stanza in re.split(r"\n\s*\n", text) if path.suffix == ".sources" else []:
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
            enabled = fields.get("Enabled", "yes").lower() != "no"
            if enabled and "deb" in fields.get("Types", "").split() and release in fields.get("Suites", "").split():
                uris = fields.get("URIs", "").split()
                if uris and "debian" in uris[0]:
                    return uris[0].rstrip("/")
        for line in text.splitlines() if path.suffix == ".list" else []:
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == release and "debian" in words[1]:
                return words[1].rstrip("/")
    return DEFAULT_MIRROR


def _mounts_under(root: Path) -> list[str]:
    prefix = f"{root}/"
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def _remove_tree(root: Path) -> None:
    """Remove ``root``, unmounting first whatever a failed debootstrap left mounted in it; if
    anything stays mounted, leave the tree alone rather than delete through a mount."""
    for point in sorted(_mounts_under(root), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    if not _mounts_under(root):
        shutil.rmtree(root, ignore_errors=True)


def base_rootfs(release: str = RELEASE) -> Path:
    """The cached root filesystem tar of ``release``, made with debootstrap if missing or stale.

    Raises:
        FileNotFoundError: debootstrap is not installed.
        RuntimeError: debootstrap or tar failed; the message holds the end of its output.
    """
    cache = cache_dir()
    tar = cache / f"rootfs-{release}.tar"
    with _locked(cache / f"rootfs-{release}.lock"):
        if tar.exists() and time.time() - tar.stat().st_mtime < ROOTFS_MAX_AGE:
            return tar
        debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
        if debootstrap is None:
            raise FileNotFoundError("debootstrap is not installed: apt-get install -y debootstrap")
        work = Path(tempfile.mkdtemp(prefix=f"rootfs-{release}-", dir=cache))
        try:
            root = work / "root"
            _run(
                [debootstrap, "--variant=minbase", f"--include={PACKAGES}", release, root, debian_mirror(release)],
                DEBOOTSTRAP_TIMEOUT,
                "debootstrap",
            )
            for path in _TRIM:
                for entry in (root / path).glob("*"):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            excludes = [f"--exclude=./{top}/*" for top in ("dev", "proc", "sys", "run", "tmp")]
            _run(
                ["tar", "--numeric-owner", *excludes, "-C", root, "-cf", work / "rootfs.tar", "."],
                DEBOOTSTRAP_TIMEOUT,
                "tar",
            )
            os.replace(work / "rootfs.tar", tar)
        finally:
            _remove_tree(work)
    return tar


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked_blocks(lock: Path) -> dict[str, list[str]]:
    """Each package of a ``uv pip compile --generate-hashes`` lock: its ``name==version`` line
    (markers dropped: :func:`runtime_requirements` decided) and its ``--hash`` lines."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            current = [f"{match.group(1)}=={match.group(2)} \\"]
            blocks[_normalize(match.group(1))] = current
        elif current is not None and line.strip().startswith("--hash="):
            current.append(f"    {line.strip()}")
        else:
            current = None
    for lines in blocks.values():
        lines[-1] = lines[-1].removesuffix(" \\")
    return blocks


def runtime_requirements(extras: Sequence[str] = ("docker",), lock: Path = LOCK) -> str:
    """The hashed requirements (from ``lock``) of what the image installs with ``extras``:
    the project's dependencies, theirs, and the build backend; markers are evaluated for the
    image's Python (:data:`TARGET_PYTHON`). The project's own requirements come from
    ``pyproject.toml``, those of its dependencies from their metadata in this environment
    (which the lock installed)."""
    env = {
        **default_environment(),
        "python_version": ".".join(TARGET_PYTHON.split(".")[:2]),
        "python_full_version": TARGET_PYTHON,
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    roots = [*project["build-system"]["requires"], *project["project"]["dependencies"]]
    for extra in extras:
        roots += project["project"]["optional-dependencies"][extra]
    needed: dict[str, set[str]] = {}
    todo = [Requirement(text) for text in roots]
    while todo:
        requirement = todo.pop()
        marker = requirement.marker
        if marker is not None and not marker.evaluate({**env, "extra": ""}):
            continue
        key = _normalize(requirement.name)
        seen = needed.get(key)
        if seen is not None and requirement.extras <= seen:
            continue
        needed[key] = wanted = (seen or set()) | requirement.extras
        try:
            requires = metadata.distribution(requirement.name).requires or []
        except metadata.PackageNotFoundError:  # needed only on the image's Python: a leaf, so far
            requires = []
        for text in requires:
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({**env, "extra": e}) for e in wanted or {""}):
                dependency.marker = None
                todo.append(dependency)
    blocks = _locked_blocks(lock)
    missing = sorted(set(needed) - set(blocks))
    if missing:
        raise RuntimeError(f"{lock.name} does not pin {', '.join(missing)}: refresh it with scripts/lock.sh")
    return "".join("\n".join(blocks[name]) + "\n" for name in sorted(needed))


def _platform_args() -> list[str]:
    machine = platform.machine()
    tags = ["manylinux1", "manylinux2010", "manylinux2014", *(f"manylinux_2_{minor}" for minor in range(5, 37))]
    args = ["--python-version", "".join(TARGET_PYTHON.split(".")[:2]), "--implementation", "cp"]
    args += ["--abi", f"cp{''.join(TARGET_PYTHON.split('.')[:2])}"]
    for tag in tags:
        args += ["--platform", f"{tag}_{machine}"]
    return args


def dependency_wheels(extras: Sequence[str] = ("docker",)) -> Path:
    """A cached directory of the wheels :func:`runtime_requirements` names, downloaded with
    ``pip download --require-hashes`` for the image's Python and platform."""
    requirements = runtime_requirements(extras)
    args = _platform_args()
    digest = hashlib.sha256("\n".join([requirements, *args]).encode()).hexdigest()[:16]
    cache = cache_dir()
    wheels = cache / f"wheels-{digest}"
    with _locked(cache / "wheels.lock"):
        if wheels.is_dir():
            return wheels
        work = Path(tempfile.mkdtemp(prefix="wheels-", dir=cache))
        try:
            (work / "requirements.txt").write_text(requirements)
            _run(
                [
                    sys.executable,
                    *("-m", "pip", "download", "--quiet", "--disable-pip-version-check"),
                    *("--no-deps", "--require-hashes", "--only-binary=:all:", *args),
                    *("--dest", work / "wheels", "--requirement", work / "requirements.txt"),
                ],
                DOWNLOAD_TIMEOUT,
                "pip download",
            )
            os.replace(work / "wheels", wheels)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return wheels


def _dockerignore(root: Path) -> list[str]:
    lines = (root / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def build_context(dest: Path, wheels: Path | None, root: Path = REPO) -> list[str]:
    """Copy into ``dest`` what ``docker build`` of ``root`` sends (the Dockerfile, and the
    files its ``.dockerignore`` lets through), and ``wheels`` as ``dest/wheels`` (a
    ``wheels/`` of ``root`` is left out). Returns the files of ``root`` copied."""
    from docker.utils.build import exclude_paths

    copied = []
    for relative in sorted(exclude_paths(str(root), _dockerignore(root))):
        source = root / relative
        if source.is_dir() or relative == "wheels" or relative.startswith("wheels/"):
            continue
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied.append(relative)
    if wheels is not None:
        shutil.copytree(wheels, dest / "wheels")
    return copied


def import_base(client: docker.DockerClient, rootfs: Path, tag: str) -> None:
    """``docker import`` the root filesystem under ``tag``, with PATH and LANG set."""
    repository, _, version = tag.rpartition(":")
    client.api.import_image_from_file(str(rootfs), repository=repository, tag=version, changes=list(BASE_ENV))


def build_image(
    client: docker.DockerClient, context: Path, tag: str, buildargs: dict[str, str]
) -> tuple[Image, list[str]]:
    """``docker build`` the context (the engine's classic builder) with no network for its
    steps, and return the image and its build output; a failed build raises AssertionError
    with the end of that output."""
    import docker.errors

    try:
        image, chunks = client.images.build(
            path=str(context), tag=tag, buildargs=buildargs, rm=True, forcerm=True, pull=False, network_mode="none"
        )
    except docker.errors.BuildError as exc:
        lines = [str(chunk.get("stream") or chunk.get("error") or "") for chunk in exc.build_log]
        raise AssertionError("docker build failed:\n" + "".join(lines)[-5000:]) from None
    return image, [str(chunk["stream"]) for chunk in chunks if "stream" in chunk]


def main(argv: Sequence[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] != "wheels":
        print("usage: image_support.py wheels DIR [EXTRAS, e.g. docker or chain,docker]", file=sys.stderr)
        return 2
    extras = [e for e in (argv[2] if len(argv) == 3 else "docker").split(",") if e]
    dest = Path(argv[1])
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in dependency_wheels(extras).iterdir():
        shutil.copy2(wheel, dest / wheel.name)
    print(f"{dest}: the wheels for EXTRAS={','.join(extras)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
