"""The runtime directory: where the coordinator's lock, the workers' socket and the control
socket live, and the checks that keep another local user out of it.

Whoever can write in that directory can swap ``workers.sock`` for a socket of their own (and
receive every worker's registration) or plant a symlink the lock would follow. So:

* the default is a place only we can create: ``$RUNTIME_DIRECTORY`` (systemd), ``/run/galileo``
  for root, ``$XDG_RUNTIME_DIR/galileo``; without those, ``/tmp/galileo-UID``, used only once
  verified ours (tmux's rule: another user who creates it first gets a refusal, not our sockets);
* a coordinator uses a directory only if it is ours (owner us, mode at most 0700, a real
  directory), no component of its path is a symlink, and every ancestor is owned by root or us
  and writable by nobody else (or sticky, as ``/tmp`` is), so nobody can swap it afterwards;
* files in it are opened with ``O_NOFOLLOW`` and checked after ``bind``.

``galileo farm stats`` and ``farm scale`` find the same directory by the same rules and refuse
one another user could have prepared.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RuntimeDir",
    "RuntimeDirError",
    "check_client_dir",
    "check_socket",
    "locate",
    "owner_name",
    "prepare",
    "private_umask",
    "probe_socket",
]


class RuntimeDirError(RuntimeError):
    """The runtime directory cannot be trusted (or created); the message names where it came from."""


@dataclass(frozen=True, slots=True)
class RuntimeDir:
    """A runtime directory and where its path came from (for error messages)."""

    path: Path
    source: str


def locate(configured: str, config_file: Path | None = None) -> RuntimeDir:
    """The runtime directory a coordinator uses, and a ``farm stats`` finds, with this config."""
    if configured:
        where = f"farm.runtime_dir in {config_file}" if config_file else "farm.runtime_dir"
        return RuntimeDir(Path(os.path.abspath(Path(configured).expanduser())), where)
    systemd_dir = os.environ.get("RUNTIME_DIRECTORY")
    if systemd_dir:
        return RuntimeDir(Path(systemd_dir.split(":")[0]), "$RUNTIME_DIRECTORY (systemd's RuntimeDirectory=)")
    uid = os.geteuid()
    if uid == 0:  # before $XDG_RUNTIME_DIR: sudo drops it, an ssh login sets it; root's farm is one place
        return RuntimeDir(Path("/run/galileo"), "the default for root")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return RuntimeDir(Path(xdg) / "galileo", "$XDG_RUNTIME_DIR/galileo")
    return RuntimeDir(Path(f"/tmp/galileo-{uid}"), "the default without $XDG_RUNTIME_DIR")


def owner_name(uid: int) -> str:
    import pwd

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _refuse(rd: RuntimeDir, problem: str) -> RuntimeDirError:
    return RuntimeDirError(
        f"runtime dir {rd.path} (from {rd.source}): {problem}. The lock and the worker and control "
        "sockets must live where no other user can reach them: set farm.runtime_dir (or "
        "$XDG_RUNTIME_DIR) to a directory of your own, mode 0700"
    )


def _components(path: Path) -> Iterator[Path]:
    """``/``, ``/a``, ``/a/b``, ... ``path`` (absolute, normalised)."""
    cur = Path("/")
    yield cur
    for part in path.parts[1:]:
        cur = cur / part
        yield cur


def _check_ancestor(rd: RuntimeDir, p: Path, st: os.stat_result, uid: int) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(rd, f"{p} is a symbolic link (links on the path are refused: they can be re-pointed)")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(rd, f"{p} is not a directory")
    if st.st_uid not in (0, uid):
        raise _refuse(rd, f"{p} belongs to {owner_name(st.st_uid)}, who could replace what is below it")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise _refuse(rd, f"{p} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o}) and not sticky")


def prepare(rd: RuntimeDir) -> Path:
    """Create ``rd`` (mode 0700) if missing, and return its path once it is verified ours.

    Raises RuntimeDirError when a component is a symlink, an ancestor could be replaced by
    another user, or the directory itself is not ours, not a directory, or wider than 0700.
    """
    path = Path(os.path.abspath(rd.path))
    uid = os.geteuid()
    for p in _components(path):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            try:
                os.mkdir(p, 0o700)  # never follows a symlink; umask can only narrow 0700
            except FileExistsError:
                pass  # someone made it between our lstat and mkdir: checked below like any other
            except OSError as exc:
                raise _refuse(rd, f"cannot create {p}: {exc.strerror}") from None
            st = os.lstat(p)
        except OSError as exc:
            raise _refuse(rd, f"cannot inspect {p}: {exc.strerror}") from None
        if p != path:
            _check_ancestor(rd, p, st, uid)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(rd, "it is a symbolic link")
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse(rd, "it is not a directory")
        if st.st_uid != uid:
            raise _refuse(rd, f"it belongs to {owner_name(st.st_uid)}, not to us ({owner_name(uid)})")
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise _refuse(rd, f"its mode is {stat.S_IMODE(st.st_mode):04o}, wider than 0700")
    return path


def check_client_dir(rd: RuntimeDir) -> int | None:
    """For ``farm stats`` / ``farm scale``: the owner of the directory, or None when it does not
    exist (no farm). Raises RuntimeDirError when another user could have prepared it.

    A client talks to the directory a coordinator made: owned by us, or by root; or, when we are
    root, by the service's own user (``sudo galileo farm stats`` on a farm run as ``galileo``).
    """
    path = Path(os.path.abspath(rd.path))
    uid = os.geteuid()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _refuse(rd, f"cannot inspect it: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise _refuse(rd, "it is a symbolic link" if stat.S_ISLNK(st.st_mode) else "it is not a directory")
    if uid != 0 and st.st_uid not in (0, uid):
        raise _refuse(rd, f"it belongs to {owner_name(st.st_uid)}, not to us ({owner_name(uid)})")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise _refuse(rd, f"its mode is {stat.S_IMODE(st.st_mode):04o}, wider than 0700")
    owner = st.st_uid
    for p in _components(path):
        if p == path:
            break
        try:
            _check_ancestor(rd, p, os.lstat(p), owner)
        except OSError as exc:
            raise _refuse(rd, f"cannot inspect {p}: {exc.strerror}") from None
    return owner


def check_socket(path: Path, owner: int | None = None) -> None:
    """``path`` is a unix socket (not a symlink) owned by ``owner`` (default: us), mode 0600 or less."""
    want = os.geteuid() if owner is None else owner
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise RuntimeDirError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise RuntimeDirError(f"{path} is not a socket (a symlink or a file was put in its place)")
    if st.st_uid != want:
        raise RuntimeDirError(f"{path} belongs to {owner_name(st.st_uid)}, not {owner_name(want)}")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise RuntimeDirError(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, wider than 0600")


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files created meanwhile (a zmq ipc bind) get mode 0600 at birth, with no chmod to race."""
    old = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(old)


def probe_socket(path: Path) -> str | None:
    """Why nobody is listening on unix socket ``path`` (missing, stale), or None when someone is.

    ZeroMQ's connect never fails (it retries in the background), so a stale socket left by a
    killed coordinator would look like a farm that does not answer; a plain connect tells at once.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except FileNotFoundError:
            return f"no control socket at {path}"
        except ConnectionRefusedError:
            return f"{path} is left from a coordinator that is gone (nothing listens on it)"
        except OSError as exc:
            if exc.errno in (errno.ENOTSOCK, errno.ECONNREFUSED):
                return f"{path} is not a live socket"
            raise
    return None
