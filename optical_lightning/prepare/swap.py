"""Build ``<out>`` in a temporary sibling folder and swap it in only when it is complete.

:func:`new_tree` makes ``<out>.tmp-<pid>-XXXX`` next to ``<out>`` (same file system, so renames
are cheap and atomic); the build writes every file there, ``manifest.json`` last. A failure or
Ctrl-C before :func:`swap_in` leaves ``<out>`` exactly as it was. The swap itself is one atomic
``renameat2(RENAME_EXCHANGE)`` on Linux (elsewhere two renames: ``<out>`` -> ``<out>.old-<pid>-XXXX``,
tree -> ``<out>``, undone if the second fails), with Ctrl-C held off until it is done. Then what the
build does not manage (the download cache ``.cache``, a user's own files; see
:data:`~.guard.MANAGED_TOP`) is carried from the old tree into the new one by rename, never
copied, and the old tree is removed.

A process killed in between (power loss, ``kill -9``) leaves a sibling whose process is gone;
the next build's :func:`recover` puts things right before it starts, and says what it did: an old
tree with no ``<out>`` is renamed back to ``<out>``; any other such sibling gives up what the build
does not manage to ``<out>`` and is removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from optical_lightning.prepare.guard import MANAGED_EVAL, MANAGED_TOP
from optical_lightning.utils.atomic import public_mode

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def new_tree(out: Path) -> Path:
    """An empty folder next to ``out`` to build into, named after this process."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tree = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    public_mode(tree, directory=True)
    return tree


def _kept(name: str, managed: tuple[str, ...]) -> bool:
    return name not in managed and not (name.startswith(".") and ".tmp-" in name)  # not a half-written temp file


def unmanaged(root: Path) -> list[str]:
    """What a build does not write, relative to ``root``: top-level entries other than ``bitext/``,
    ``eval/`` and ``manifest.json`` (the download cache among them), and other entries of ``eval/``."""
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if _kept(p.name, MANAGED_TOP)]
    if (root / "eval").is_dir():
        found += [f"eval/{p.name}" for p in (root / "eval").iterdir() if _kept(p.name, MANAGED_EVAL)]
    return sorted(found)


def carry_over(old: Path, new: Path) -> list[str]:
    """Move :func:`unmanaged` entries of ``old`` into ``new`` by rename; return those ``new`` already had
    (left in ``old``)."""
    clashes = []
    for rel in unmanaged(old):
        target = new / rel
        if os.path.lexists(target):
            clashes.append(rel)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(old / rel, target)
    return clashes


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2``); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # C library without renameat2 (glibc < 2.28, musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # kernel or file system lacks it
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back (they arrive right after), so Ctrl-C cannot land between two renames."""
    try:
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    except (AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def swap_in(tree: Path, out: Path, log: Callable[[str], None] = print) -> None:
    """Put the finished ``tree`` at ``out`` (see the module docstring); ``out`` is a resolved path."""
    with _signals_held():
        try:
            if not out.exists():
                os.rename(tree, out)
                return
            if _exchange(tree, out):
                old = tree  # the previous tree now sits at the temporary name
            else:
                old = out.with_name(f"{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
                os.rename(out, old)
                try:
                    os.rename(tree, out)
                except BaseException:
                    os.rename(old, out)
                    raise
        except BaseException:  # nothing was swapped: the earlier ``out`` stands, the new tree goes
            shutil.rmtree(tree, ignore_errors=True)
            raise
        clashes = carry_over(old, out)  # should this fail, :func:`recover` finishes it on the next build
    if clashes:
        log(f"{out.name}: kept {old} (its {', '.join(clashes)} clash with the new build's); remove it by hand")
        return
    shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(out: Path, log: Callable[[str], None] = print) -> None:
    """Put right what a killed build left next to ``out`` (``out`` is a resolved path); siblings of a
    build that is still running are left alone."""
    if not out.parent.is_dir():
        return
    pattern = re.compile(re.escape(out.name) + r"\.(tmp|old)-(\d+)-.+")
    stale = []
    for p in sorted(out.parent.iterdir()):
        m = pattern.fullmatch(p.name)
        if m and p.is_dir() and not p.is_symlink() and not _alive(int(m.group(2))):
            stale.append((m.group(1), p))
    olds = [p for kind, p in stale if kind == "old"]
    if olds and not out.exists():  # killed between the two renames of a swap: the old tree goes back
        back = max(olds, key=lambda p: p.stat().st_mtime)
        os.rename(back, out)
        stale.remove(("old", back))
        log(f"{out.name}: restored {out} from {back.name}, left by a build killed while swapping it in")
    for _, p in stale:
        moved = unmanaged(p) if out.is_dir() else []
        clashes = carry_over(p, out) if moved else []
        if clashes:
            log(f"{out.name}: left {p} (its {', '.join(clashes)} clash with {out}'s); remove it by hand")
            continue
        shutil.rmtree(p, ignore_errors=True)
        log(f"{out.name}: removed {p.name}, left by a killed build" +
            (f"; moved its {', '.join(moved)} into {out}" if moved else ""))
