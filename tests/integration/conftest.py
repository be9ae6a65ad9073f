"""Shared fixtures: a real `wharf serve` on free loopback ports, and real clients.

Every test gets its own server, data folder and accounts, so tests run in any order. The
binary is the one `cargo build` produced (WHARF_BIN overrides it).
"""

import hashlib
import json
import os
import re
import socket
import subprocess
import time
import ftplib
from pathlib import Path

import pytest

from ftp_clients import ImplicitFTP_TLS, ReusingFTP_TLS, tls_client_context  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("WHARF_BIN", ROOT / "target" / "debug" / "wharf"))


# Each pytest-xdist worker takes ports from its own range, below Linux's ephemeral range
# (32768-60999, where the kernel picks ports for outgoing connections and port 0), so two
# tests running at once never receive the same port.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_SPAN = 2000
_FIRST = 12000 + (_WORKER % 10) * _SPAN
_NEXT = [0]


def free_port() -> int:
    """A port free on both 127.0.0.1 and ::1, from this worker's range, never one this
    worker handed out recently (a port handed out is not bound until its server starts)."""
    for _ in range(_SPAN):
        port = _FIRST + _NEXT[0] % _SPAN
        _NEXT[0] += 1
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
                s4.bind(("127.0.0.1", port))
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                s6.bind(("::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port on 127.0.0.1 and ::1")


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class WharfServer:
    def __init__(self, root: Path, init_args=()):
        self.root = root
        self.port = free_port()
        self.ftps_port = free_port()
        self.implicit_port = free_port()
        self.https_port = free_port()
        self.manager_port = free_port()
        self.proc = None
        self.log = root / "serve.log"
        out = self.wharf("init", str(root), *init_args, check=True)
        self.admin_output = out.stderr
        config = (root / "wharf.toml").read_text()
        config = config.replace('address = "::"', 'address = ["127.0.0.1", "::1"]')
        config = config.replace("port = 2222", f"port = {self.port}")
        config = config.replace("port = 2121", f"port = {self.ftps_port}")
        config = config.replace("port = 2990", f"port = {self.implicit_port}")
        config = config.replace("port = 8443", f"port = {self.https_port}")
        config = config.replace("port = 9443", f"port = {self.manager_port}")
        # Long enough for a login on a loaded machine (several tests run at once); tests of
        # the grace time itself shorten it with short_login_grace().
        config = config.replace("login_grace_time = 120", "login_grace_time = 20")
        (root / "wharf.toml").write_text(config)
        self.homes = root / "wharf-data" / "homes"
        self.key = root / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)

    @classmethod
    def restored(cls, root: Path, source: "WharfServer"):
        """A server over the folder `wharf restore` made from `source`'s backup, moved to
        new ports so both can run at once; same client key and home folders as `source`."""
        self = cls.__new__(cls)
        self.root = root
        self.proc = None
        self.log = root / "serve.log"
        self.key = source.key
        self.homes = source.homes
        config = (root / "wharf.toml").read_text()
        for attr in ("port", "ftps_port", "implicit_port", "https_port", "manager_port"):
            port = free_port()
            config = config.replace(f"port = {getattr(source, attr)}\n", f"port = {port}\n")
            setattr(self, attr, port)
        (root / "wharf.toml").write_text(config)
        return self

    def add_ftp_service(self, extra="", tls="off", name="ftp-plain"):
        """Adds an FTP service with the given TLS policy on a free port (both loopback families).

        The default configuration already has explicit FTPS (`ftps_port`, tls = required) and
        implicit FTPS (`implicit_port`)."""
        port = free_port()
        if name == "ftp-plain":
            self.ftp_port = port
        with open(self.root / "wharf.toml", "a") as f:
            f.write(f"""
[[service]]
name = "{name}"
type = "ftp"
tls = "{tls}"
address = ["127.0.0.1", "::1"]
port = {port}
login_grace_time = 10
{extra}
""")
        return port

    def short_login_grace(self, seconds=5):
        """Shortens every service's login grace time (call before start)."""
        config = self.root / "wharf.toml"
        config.write_text(config.read_text().replace("login_grace_time = 20", f"login_grace_time = {seconds}"))

    def ftp(self, user, password, host="127.0.0.1"):
        client = ftplib.FTP()
        client.connect(host, self.ftp_port, timeout=15)
        client.login(user, password)
        return client

    def ftp_client(self, mode, user, password, host="127.0.0.1", port=None):
        """A logged-in ftplib client: `ftp` (plain service), `ftps` (AUTH TLS, PROT P) or
        `implicit` (TLS from the first byte, PROT P)."""
        if mode == "ftp":
            client = ftplib.FTP()
            default = self.ftp_port
        elif mode == "ftps":
            client = ReusingFTP_TLS(context=tls_client_context())
            default = self.ftps_port
        else:
            client = ImplicitFTP_TLS(context=tls_client_context())
            default = self.implicit_port
        client.connect(host, port or default, timeout=15)
        client.login(user, password)
        if mode != "ftp":
            client.prot_p()
        return client

    # -- CLI --------------------------------------------------------------
    def wharf(self, *args, input=None, check=False):
        cmd = [str(BIN), "--config", str(self.root / "wharf.toml"), *args]
        if args and args[0] == "init":
            cmd = [str(BIN), *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"{cmd} failed: {result.stderr}")
        return result

    def add_account(self, name, password=None, groups=(), key=True, home=None):
        args = ["account", "add", name]
        if password is not None:
            args.append("--password-stdin")
        if key:
            args += ["--ssh-key", str(self.key) + ".pub"]
        for g in groups:
            args += ["--group", g]
        if home:
            args += ["--home", str(home)]
        self.wharf(*args, input=(password + "\n") if password else None, check=True)
        return self.homes / name

    def events(self, *filters):
        out = self.wharf("events", "--json", "--limit", "100000", *filters, check=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_event(self, name, timeout=10, **fields):
        """Waits until an event with `name` and matching fields is persisted."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events():
                if e["name"] == name and all(e.get(k) == v for k, v in fields.items()):
                    return e
            time.sleep(0.2)
        raise AssertionError(f"no {name} event with {fields}; have: {[e['name'] for e in self.events()][-30:]}")

    # -- process ----------------------------------------------------------
    def start(self):
        self.proc = subprocess.Popen(
            [str(BIN), "--config", str(self.root / "wharf.toml"), "serve"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"wharf exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                self._wait_for_every_service()
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"wharf did not listen: {self.log.read_text()}")

    def _wait_for_every_service(self, seconds=10):
        """The SSH service listens first; the others (an FTP service a test added last)
        may take a moment more on a loaded machine. Waits until the log names as many
        services listening as the file has, or a while (a test may make one fail)."""
        wanted = len(re.findall(r"^\[\[service\]\]", (self.root / "wharf.toml").read_text(), re.M))
        started = re.compile(r"^wharf: \S+ \((ssh|ftp|ftps-implicit|http|https|manager):", re.M)
        deadline = time.time() + seconds
        while time.time() < deadline and self.proc.poll() is None:
            if len(started.findall(self.log.read_text())) >= wanted:
                return
            time.sleep(0.05)

    def start_standby(self, active=None):
        """Starts `serve --standby [--for ACTIVE]` and waits until it stands by (listening
        on nothing)."""
        self.proc = subprocess.Popen(
            [str(BIN), "--config", str(self.root / "wharf.toml"), "serve", "--standby",
             *(["--for", active] if active else [])],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"wharf exited: {self.log.read_text()}")
            if "standing by" in self.log.read_text():
                return self
            time.sleep(0.1)
        raise AssertionError(f"wharf did not stand by: {self.log.read_text()}")

    def listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # -- clients ----------------------------------------------------------
    def ssh_opts(self, key=None):
        return [
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-i", str(key or self.key),
        ]

    def sftp(self, user, script, host="127.0.0.1", extra=(), check=True):
        batch = self.root / f"batch-{time.time_ns()}"
        batch.write_text(script)
        cmd = ["sftp", *self.ssh_opts(), "-P", str(self.port), *extra, "-b", str(batch), f"{user}@[{host}]"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and result.returncode != 0:
            raise AssertionError(f"sftp failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def scp(self, *args, legacy=False, check=True):
        cmd = ["scp", *self.ssh_opts(), "-P", str(self.port)]
        if legacy:
            cmd.append("-O")
        cmd += list(args)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and result.returncode != 0:
            raise AssertionError(f"scp failed ({result.returncode}):\n{result.stderr}")
        return result

    def ssh(self, user, command, stdin=None, host="127.0.0.1"):
        cmd = ["ssh", *self.ssh_opts(), "-p", str(self.port), f"{user}@{host}", command]
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=60,
                              stdin=None if stdin is not None else subprocess.DEVNULL)

    def paramiko(self, user, password=None, host="127.0.0.1"):
        import paramiko
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        kwargs = {"password": password} if password else {"key_filename": str(self.key)}
        client.connect(host, port=self.port, username=user, allow_agent=False,
                       look_for_keys=False, timeout=10, **kwargs)
        return client


@pytest.fixture
def server(tmp_path):
    s = WharfServer(tmp_path)
    yield s
    s.stop()


class PostgresCluster:
    """A throwaway PostgreSQL server of this test worker (scripts/throwaway-postgres)."""

    SCRIPT = ROOT / "scripts" / "throwaway-postgres"

    def __init__(self):
        self.port = free_port()
        self.dir = f"/tmp/wharf-pytest-pg-{os.getpid()}-{self.port}"
        out = subprocess.run([str(self.SCRIPT), self.dir, str(self.port), str(os.getpid())],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise AssertionError(f"cannot start PostgreSQL: {out.stderr}")
        self.url = out.stdout.strip()
        self._databases = 0

    def database(self) -> str:
        """A new empty database; its URL."""
        self._databases += 1
        name = f"w{os.getpid()}_{self._databases}"
        subprocess.run(["psql", "-q", f"{self.url}/postgres", "-c", f"CREATE DATABASE {name}"],
                       check=True, capture_output=True, timeout=30)
        return f"{self.url}/{name}"

    def psql(self, database_url: str, sql: str) -> str:
        out = subprocess.run(["psql", "-At", database_url, "-c", sql], check=True,
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip()

    def pause(self):
        """Stops the server, keeping its data."""
        subprocess.run([str(self.SCRIPT), "--pause", self.dir], check=True, timeout=60)

    def resume(self):
        subprocess.run([str(self.SCRIPT), "--resume", self.dir], check=True, timeout=60)

    def remove(self):
        subprocess.run([str(self.SCRIPT), "--stop", self.dir], timeout=60)


@pytest.fixture(scope="session")
def postgres():
    """This worker's throwaway PostgreSQL server, shared by its tests (one database each)."""
    cluster = PostgresCluster()
    yield cluster
    cluster.remove()


class Cluster:
    """Wharf nodes sharing one PostgreSQL store (a fresh database) and one homes folder.

    `node(name)` makes a node with `wharf init --store URL --node NAME`; the first node's
    init creates the `users` group (homes under the cluster's folder) and the
    administrator in the store; later nodes find them there."""

    def __init__(self, root: Path, postgres: PostgresCluster):
        self.root = root
        self.postgres = postgres
        self.store_url = postgres.database()
        self.nodes = {}

    def node(self, name: str) -> WharfServer:
        node = WharfServer(self.root / name, init_args=("--store", self.store_url, "--node", name))
        # Every node sees the first node's homes (the storage every node mounts).
        node.homes = next(iter(self.nodes.values())).homes if self.nodes else node.homes
        # One client key for the whole cluster, as one partner uses towards every node.
        if self.nodes:
            node.key = next(iter(self.nodes.values())).key
        self.nodes[name] = node
        return node

    def psql(self, sql: str) -> str:
        return self.postgres.psql(self.store_url, sql)

    def stop(self):
        for node in self.nodes.values():
            node.stop()


@pytest.fixture
def cluster(tmp_path, postgres):
    c = Cluster(tmp_path, postgres)
    yield c
    c.stop()


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            n = min(remaining, 1 << 20)
            f.write(os.urandom(n))
            remaining -= n
    return path


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
