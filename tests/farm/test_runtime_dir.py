"""The runtime dir is ours or refused: another local user cannot squat it, plant symlinks in it or
reach our sockets. The attacks run as real throwaway users (``useradd``; root only)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from galileo.farm.lock import FarmLock
from galileo.farm.rundir import RuntimeDir, RuntimeDirError, locate, prepare
from tests.farm.test_farm_processes import wait_stats

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    def run(
        self, *cmd: str | Path, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(c) for c in cmd],
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            env=env or {"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
        )


def _make_user() -> User:
    if os.geteuid() != 0:
        pytest.skip("needs root: the attacks run as a throwaway local user made with useradd")
    if shutil.which("useradd") is None:
        pytest.skip("needs useradd to make a throwaway local user")
    name = f"glt{uuid.uuid4().hex[:10]}"
    subprocess.run(
        [
            "useradd",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout
    gid = subprocess.run(["id", "-g", name], capture_output=True, text=True, check=True).stdout
    return User(name, int(out), int(gid))


@pytest.fixture
def users() -> Iterator[list[User]]:
    """Throwaway local users, removed afterwards with what they left in /tmp."""
    made: list[User] = []

    class Maker(list[User]):
        def new(self) -> User:
            u = _make_user()
            made.append(u)
            return u

    yield Maker()  # type: ignore[misc]
    for u in made:
        for p in Path("/tmp").iterdir():
            try:
                if p.lstat().st_uid == u.uid or p.name == f"galileo-{u.uid}":
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            except FileNotFoundError:
                pass
        subprocess.run(["userdel", u.name], check=False, capture_output=True)
    while _shared:
        _shared.pop().unlink(missing_ok=True)


def as_user(user: User) -> tuple[list[str], dict[str, str]]:
    """A ``python -m galileo`` command (and its env) the throwaway user can run, or skip saying why.

    The venv's interpreter may sit under /root (mode 0700, as pyenv puts it); the system's
    interpreter of the same version loads the same packages.
    """
    site = sysconfig.get_paths()["purelib"]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONPATH": f"{REPO}:{site}", "NO_COLOR": "1"}
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in dict.fromkeys([sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"]):
        try:
            probe = user.run(python, "-c", "import galileo.cli, msgspec, zmq, uvloop, aiohttp", env=env)
        except OSError:  # not there, or not for this user
            continue
        if probe.returncode == 0:
            return [python, "-m", "galileo", "--log-level", "warning"], env
    pytest.skip(f"no {minor} interpreter that user {user.name} may run along with this venv's packages")


def galileo(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "NO_COLOR": "1", "COLUMNS": "300", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "galileo", "--log-level", "warning", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
        check=False,
    )


def config(path: Path, runtime: Path | None, ip: str = "127.0.0.130") -> Path:
    rt = f"farm: {{runtime_dir: '{runtime}'}}\n" if runtime else ""
    net = f"network: {{enable_multiple_ip: true, manual_ips: ['{ip}']}}"
    path.write_text(f"bot: {{{net}, prometheus: {{enable: false}}}}\n{rt}")  # no port two farms would share
    path.chmod(0o644)
    return path


def readable(path: Path) -> Path:
    """A copy of ``path`` any user can read (pytest's tmp dirs are private to root)."""
    copy = Path(f"/tmp/glt-config-{uuid.uuid4().hex[:8]}.yaml")
    shutil.copyfile(path, copy)
    copy.chmod(0o644)
    _shared.append(copy)
    return copy


_shared: list[Path] = []


def test_a_runtime_dir_another_user_made_is_refused_and_nothing_is_written_through_it(
    users: list[User], tmp_path: Path
) -> None:
    attacker = users.new()  # type: ignore[attr-defined]
    squat = Path(f"/tmp/galileo-squat-{uuid.uuid4().hex[:8]}")
    victim = tmp_path / "precious"
    victim.write_text("root's data\n")
    assert attacker.run("mkdir", "-m", "0777", squat).returncode == 0
    assert attacker.run("chmod", "0777", squat).returncode == 0  # past the attacker's umask
    assert attacker.run("ln", "-s", victim, squat / "coordinator.lock").returncode == 0
    cfg = config(tmp_path / "c.yaml", squat)
    run = galileo("farm", "start", "-c", cfg, "--duration", "2")
    assert run.returncode == 2, run.stderr
    err = " ".join(run.stderr.split())
    assert f"runtime dir {squat} (from farm.runtime_dir in {cfg})" in err
    assert f"belongs to uid {attacker.uid} ({attacker.name})" in err
    assert victim.read_text() == "root's data\n"
    assert sorted(p.name for p in squat.iterdir()) == ["coordinator.lock"]  # no socket of ours in there
    # and its own dir made private does not help the attacker either: still not ours
    assert attacker.run("chmod", "0700", squat).returncode == 0
    again = galileo("farm", "start", "-c", cfg, "--duration", "2")
    assert again.returncode == 2 and "belongs to uid" in again.stderr


def test_the_default_dir_of_a_user_without_xdg_runtime_dir_cannot_be_squatted(
    users: list[User], tmp_path: Path
) -> None:
    attacker, victim = users.new(), users.new()  # type: ignore[attr-defined]
    squat = Path(f"/tmp/galileo-{victim.uid}")
    mine = Path(f"/tmp/glt-victim-file-{uuid.uuid4().hex[:8]}")
    assert victim.run("sh", "-c", f"echo victim-data > {mine}").returncode == 0
    assert attacker.run("mkdir", "-m", "0777", squat).returncode == 0
    assert attacker.run("chmod", "0777", squat).returncode == 0
    assert attacker.run("ln", "-s", mine, squat / "coordinator.lock").returncode == 0
    assert attacker.run("ln", "-s", mine, squat / "control.sock").returncode == 0
    cfg = readable(config(tmp_path / "c.yaml", None, "127.0.0.131"))
    cmd, env = as_user(victim)
    start = victim.run(*cmd, "farm", "start", "-c", cfg, "--duration", "2", env=env)
    assert start.returncode == 2, start.stderr
    err = " ".join(start.stderr.split())
    assert f"runtime dir {squat} (from the default without $XDG_RUNTIME_DIR)" in err and "belongs to uid" in err
    assert mine.read_text() == "victim-data\n"
    stats = victim.run(*cmd, "farm", "stats", "-c", cfg, env=env)
    assert stats.returncode == 2 and "belongs to uid" in stats.stderr  # it will not talk through it either


def test_a_non_root_users_farm_lives_in_a_dir_only_it_can_enter(users: list[User], tmp_path: Path) -> None:
    owner, other = users.new(), users.new()  # type: ignore[attr-defined]
    cfg = readable(config(tmp_path / "c.yaml", None, "127.0.0.132"))
    cmd, env = as_user(owner)
    proc = subprocess.Popen(
        [*cmd, "farm", "start", "-c", str(cfg)],
        user=owner.uid,
        group=owner.gid,
        extra_groups=[],
        env=env,
        cwd="/",
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        rt = Path(f"/tmp/galileo-{owner.uid}")
        deadline = time.monotonic() + 30
        snap: dict[str, object] = {}
        while time.monotonic() < deadline:
            stats = owner.run(*cmd, "farm", "stats", "--json", "-c", cfg, env=env)
            if stats.returncode == 0:
                snap = json.loads(stats.stdout)
                if snap["farm"]["ready"] == 1:  # type: ignore[index]
                    break
            time.sleep(0.3)
        assert snap and snap["farm"]["ready"] == 1, stats.stderr  # type: ignore[index]
        st = rt.lstat()
        assert st.st_uid == owner.uid and stat.S_IMODE(st.st_mode) == 0o700
        for name in ("workers.sock", "control.sock"):
            s = (rt / name).lstat()
            assert stat.S_ISSOCK(s.st_mode) and s.st_uid == owner.uid and stat.S_IMODE(s.st_mode) == 0o600
        # another user cannot reach it, even pointed at it on purpose
        other_cfg = readable(config(tmp_path / "other.yaml", rt, "127.0.0.133"))
        peek = other.run(*cmd, "farm", "stats", "-c", other_cfg, env=env)
        assert peek.returncode == 2 and f"belongs to uid {owner.uid}" in peek.stderr
        assert other.run("ls", rt).returncode != 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not (rt / "control.sock").exists()


@pytest.mark.parametrize(
    ("layout", "problem"),
    [
        ("ours-0777", "its mode is 0777, wider than 0700"),
        ("ours-0750", "its mode is 0750, wider than 0700"),
        ("a-file", "it is not a directory"),
        ("symlink", "it is a symbolic link"),
        ("symlink-above", "is a symbolic link (links on the path are refused"),
        ("open-parent", "is writable by other users (mode 0777) and not sticky"),
    ],
)
def test_a_dir_that_is_not_private_is_refused(tmp_path: Path, layout: str, problem: str) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    rt = tmp_path / "rt"
    if layout.startswith("ours-"):
        rt.mkdir()
        rt.chmod(int(layout[5:], 8))
    elif layout == "a-file":
        rt.write_text("")
    elif layout == "symlink":
        rt.symlink_to(real)
    elif layout == "symlink-above":
        (tmp_path / "link").symlink_to(real)
        rt = tmp_path / "link" / "rt"
    elif layout == "open-parent":
        (tmp_path / "open").mkdir()
        (tmp_path / "open").chmod(0o777)
        rt = tmp_path / "open" / "rt"
    with pytest.raises(RuntimeDirError) as refused:
        prepare(RuntimeDir(rt, "farm.runtime_dir in test.yaml"))
    assert problem in str(refused.value) and "(from farm.runtime_dir in test.yaml)" in str(refused.value)


def test_a_missing_dir_is_made_private(tmp_path: Path) -> None:
    rt = tmp_path / "a" / "b" / "rt"
    assert prepare(RuntimeDir(rt, "test")) == rt
    assert stat.S_IMODE(rt.stat().st_mode) == 0o700
    assert prepare(RuntimeDir(rt, "test")) == rt  # and reused as it is


def test_the_lock_never_follows_a_link(tmp_path: Path) -> None:
    rt = prepare(RuntimeDir(tmp_path / "rt", "test"))
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (rt / "coordinator.lock").symlink_to(victim)
    with pytest.raises(RuntimeDirError):
        FarmLock(rt).acquire()
    (rt / "coordinator.lock").unlink()
    os.link(victim, rt / "coordinator.lock")  # a hard link is a way in too
    with pytest.raises(RuntimeDirError, match="not a lock file of ours"):
        FarmLock(rt).acquire()
    assert victim.read_text() == "precious\n"


def test_where_the_farm_lives_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    assert locate("", None) == RuntimeDir(Path("/tmp/galileo-1234"), "the default without $XDG_RUNTIME_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1234")
    assert locate("", None).path == Path("/run/user/1234/galileo")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert locate("", None) == RuntimeDir(Path("/run/galileo"), "the default for root")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/galileo-unit")
    assert locate("", None).path == Path("/run/galileo-unit")
    assert locate("~/rt", Path("g.yaml")).source == "farm.runtime_dir in g.yaml"


async def test_a_stale_control_socket_says_not_running_at_once(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    cfg = config(tmp_path / "c.yaml", rt, "127.0.0.134")

    async def start() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "galileo", "--log-level", "warning", "farm", "start", "-c", str(cfg),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await wait_stats(rt / "control.sock", 1, timeout=30)
        return proc

    proc = await start()
    proc.send_signal(signal.SIGTERM)  # a clean stop removes its sockets
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert not (rt / "control.sock").exists() and not (rt / "workers.sock").exists()
    clean = await asyncio.to_thread(galileo, "farm", "stats", "-c", cfg)
    assert clean.returncode == 1 and "no coordinator is running" in clean.stderr, clean.stderr

    proc = await start()
    proc.kill()  # SIGKILL leaves its socket file behind
    await proc.wait()
    assert (rt / "control.sock").exists()
    stale = await asyncio.to_thread(galileo, "farm", "scale", "--remove", "127.0.0.134", "-c", cfg)
    assert stale.returncode == 1 and "no coordinator is running" in stale.stderr, stale.stderr
    assert "did not answer" not in stale.stderr
