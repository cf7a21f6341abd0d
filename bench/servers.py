"""Start and stop the servers under test: chatd, and ngIRCd and InspIRCd for the side-by-side mode.

Each server gets a fresh temporary directory (database, config, log), is
pinned to core 0 with `taskset`, listens on 127.0.0.1 only, and is stopped
with SIGTERM (then SIGKILL after a deadline), so a run never leaves one behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_CORE = "0"  # why: the issue measures a server pinned to one core, generator on the other
START_TIMEOUT = 60.0  # why: cost-12 start-up (a dummy hash) plus migrations, with headroom
STOP_TIMEOUT = 20.0
_LISTENING = re.compile(r"listening on (\S+):(\d+)")
_IRC_LISTENING = re.compile(r"irc listening on (\S+):(\d+)")


@dataclass(frozen=True, slots=True)
class Running:
    """A started server: what the load generator needs to reach and measure it."""

    kind: str  # "chatd" or "irc"
    port: int
    pid: int
    workdir: Path
    version: str
    password: str | None = None  # IRC clients log in with PASS nick:password (chatd's IRC)
    # why: a cluster (bench/nodes.py) is reached through any of its nodes; the fields above
    # are its first node's, and this holds every node, the first included
    nodes: tuple[Running, ...] = ()


def _pinned(command: list[str], core: str = SERVER_CORE) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", core, *command]
    return command


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


# why: the runner's --chatd points a run at another build (another worktree's venv), so an
# old and a new server can be measured side by side by the same generator.
_CHATD_OVERRIDE: str | None = None


def use_chatd(executable: str | None) -> None:
    """Make `chatd_executable()` return this one (None: back to the default)."""
    global _CHATD_OVERRIDE
    _CHATD_OVERRIDE = executable


def chatd_executable() -> str:
    """The chosen `chatd` (`use_chatd`), else the one next to this Python, else PATH's."""
    if _CHATD_OVERRIDE is not None:
        return _CHATD_OVERRIDE
    beside = Path(sys.executable).parent / "chatd"
    if beside.exists():
        return str(beside)
    found = shutil.which("chatd")
    if found is None:
        raise RuntimeError("chatd is not installed in this environment")
    return found


def chatd_fairness_flags() -> list[str]:
    """Flags that make a load run fair and that this chatd build knows about.

    `--send-rate 0` (flood control off) is passed only once chatd has the flag.
    """
    help_text = subprocess.run(
        [chatd_executable(), "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    flags = {
        "--send-rate": "0",
        "--login-failures": "0",
        "--registrations-per-hour": "0",
        "--max-connections-per-ip": "0",
        "--max-connections": "100000",
    }
    return [item for flag, value in flags.items() if flag in help_text for item in (flag, value)]


def seed_accounts(url: str, names: list[str], password: str, cost: int) -> bool:
    """Create accounts directly through chatd's Store before the server starts.

    Why: registering 10,000 clients, or 200 at bcrypt cost 12 (0.3 s each on
    one core), over the wire would make set-up dominate the run. All accounts
    share one hash. Returns False (and the generator registers over the wire
    instead) when the Store's interface has changed.
    """
    try:
        import bcrypt

        from chatd.store import open_store

        subprocess.run(
            [chatd_executable(), "init-db", "--db", url],
            check=True,
            capture_output=True,
            timeout=120,
        )
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode("ascii")
        store = open_store(url)
        try:
            for name in names:
                store.create_user(name, hashed)
        finally:
            store.close()
    except Exception as exc:  # any change in chatd's internals: fall back, say so
        print(f"bench: seeding accounts failed ({exc}); registering over the wire", file=sys.stderr)
        return False
    return True


def _wait_listening(
    process: subprocess.Popen[bytes], log: Path, pattern: re.Pattern[str] = _LISTENING
) -> tuple[str, int]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = pattern.search(log.read_text(errors="replace"))
        if match:
            return match.group(1), int(match.group(2))
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"server exited with {process.returncode}: {tail}")
        time.sleep(0.05)
    raise RuntimeError(f"server did not report listening within {START_TIMEOUT}s")


@contextlib.contextmanager
def chatd_server(
    extra_flags: list[str] | tuple[str, ...] = (),
    seed: list[str] | None = None,
    password: str = "",
    seed_cost: int = 4,
) -> Iterator[Running]:
    """A fresh chatd on a new SQLite file, pinned to core 0; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="chatd-bench-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'chatd.db'}"
        seeded = bool(seed) and seed_accounts(url, seed or [], password, seed_cost)
        log = workdir / "chatd.log"
        command = [
            chatd_executable(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--db",
            url,
            "--bcrypt-rounds",
            "4",
            "--log-level",
            "info",
            *chatd_fairness_flags(),
            *extra_flags,
        ]
        env = {**os.environ, "XDG_DATA_HOME": str(workdir / "data")}
        version = subprocess.run(
            [chatd_executable(), "--version"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                _pinned(command),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                stdin=subprocess.DEVNULL,
            )
            try:
                irc = "--irc-port" in extra_flags
                _host, port = _wait_listening(process, log, _IRC_LISTENING if irc else _LISTENING)
                yield Running(
                    "irc" if irc else "chatd",
                    port,
                    process.pid,
                    workdir,
                    version + (" (accounts seeded)" if seeded else "") + (" IRC" if irc else ""),
                    password if irc else None,
                )
            finally:
                _stop(process)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


NGIRCD_CONF = """\
# Written by chatd's bench/servers.py for one benchmark run; deleted afterwards.
[Global]
	Name = bench.invalid
	Info = chatd benchmark peer
	AdminInfo1 = chatd bench
	AdminInfo2 = localhost
	AdminEMail = nobody@bench.invalid
	Listen = 127.0.0.1
	Ports = {port}
	PidFile = {workdir}/ngircd.pid
	MotdPhrase = "bench"
[Limits]
	# all load comes from one address, so no per-IP or total connection cap
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 0
	MaxNickLength = 16
	# 0 turns penalties (ngIRCd's flood throttling) off altogether
	MaxPenaltyTime = 0
	PingTimeout = 600
	PongTimeout = 600
[Options]
	DNS = no
	Ident = no
	PAM = no
"""


@contextlib.contextmanager
def ngircd_server() -> Iterator[Running]:
    """ngIRCd (if installed) on 127.0.0.1 with flood penalties off, pinned to core 0."""
    binary = _installed("ngircd", "ngircd")
    with tempfile.TemporaryDirectory(prefix="ngircd-bench-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        conf = workdir / "ngircd.conf"
        conf.write_text(NGIRCD_CONF.format(port=port, workdir=workdir))
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()[0]
        command = [binary, "--nodaemon", "--config", str(conf)]
        with _irc_process(command, workdir, port, "ngircd") as pid:
            yield Running("irc", port, pid, workdir, version)


INSPIRCD_CONF = """\
# Written by chatd's bench/servers.py for one benchmark run; deleted afterwards.
# No <module> tags: only InspIRCd's core modules load (no chanhistory, no ident,
# no connectban, no cloaking), so a channel message costs what it costs in the core.
<server name="bench.invalid" description="chatd benchmark peer" network="bench">
<admin name="chatd bench" nick="bench" email="nobody@bench.invalid">
<bind address="127.0.0.1" port="{port}" type="clients">
# All load comes from one address: no per-IP or class cap. Flood control off: penalties
# drain at 4M commands/s (commandrate is in millicommands/s) against a threshold of 1M,
# and fakelag is off; queues of 64 MiB, so no client is dropped or throttled for sendq.
<connect name="bench" allow="*" limit="100000" localmax="100000" globalmax="100000"
         maxconnwarn="no" threshold="1000000" commandrate="4000000000" fakelag="no"
         hardsendq="67108864" softsendq="67108864" recvq="67108864"
         maxchans="100" timeout="60" pingfreq="600" resolvehostnames="no" useident="no">
# core_dns always loads; with resolvehostnames="no" it never asks, and if it did,
# only 127.0.0.1.
<dns server="127.0.0.1" timeout="1">
<files motd="{workdir}/motd.txt">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{workdir}/ircd.log">
<performance softlimit="100000" somaxconn="1024" clonesonconnect="no">
<whowas groupsize="0" maxgroups="0" maxkeep="3600">
"""


@contextlib.contextmanager
def inspircd_server() -> Iterator[Running]:
    """InspIRCd 3 (if installed) on 127.0.0.1, core modules only, flood limits off, core 0."""
    binary = _installed("inspircd", "inspircd")
    with tempfile.TemporaryDirectory(prefix="inspircd-bench-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        conf = workdir / "inspircd.conf"
        conf.write_text(INSPIRCD_CONF.format(port=port, workdir=workdir))
        (workdir / "motd.txt").write_text("bench\n")  # why: without one, 422 ERR_NOMOTD
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        command = [binary, "--config", str(conf), "--nofork", "--nopid"]
        if os.geteuid() == 0:
            command.append("--runasroot")  # why: InspIRCd refuses root without it
        with _irc_process(command, workdir, port, "inspircd") as pid:
            yield Running("irc", port, pid, workdir, version)


@contextlib.contextmanager
def chatd_irc_server(seed: list[str], password: str) -> Iterator[Running]:
    """chatd measured through its IRC listener (--irc-port): the accounts the scenario's IRC
    clients log in as are seeded first, as for the chatd scenarios that seed."""
    with chatd_server(("--irc-port", "0"), seed, password) as running:
        yield running


# why: chatd-irc is chatd itself, spoken to over IRC; it starts as chatd does, with accounts
CHATD_IRC = "chatd-irc"
IRC_SERVERS = {"ngircd": ngircd_server, "inspircd": inspircd_server, CHATD_IRC: None}


def _installed(name: str, package: str) -> str:
    binary = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if binary is None:
        raise RuntimeError(f"{name} is not installed (Debian: apt-get install {package})")
    return binary


@contextlib.contextmanager
def _irc_process(command: list[str], workdir: Path, port: int, name: str) -> Iterator[int]:
    """Run an IRC server pinned to core 0 until the block ends; yields its pid."""
    log = workdir / f"{name}.out"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            _pinned(command),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
        try:
            _wait_port(process, port, log, name)
            yield process.pid
        finally:
            _stop(process)


def _wait_port(process: subprocess.Popen[bytes], port: int, log: Path, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with {process.returncode}: {tail}")
        with socket.socket() as probe:
            probe.settimeout(1.0)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port} within {START_TIMEOUT}s")
