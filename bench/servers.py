"""The servers under test: Wharf and its peers (OpenSSH sshd, vsftpd, nginx), each with its
own configuration in the scratch folder, on loopback ports, serving the same files.

Peers run as a throwaway system user (`wharfbench`) whose home is in the scratch folder;
Wharf serves an account of the same name. Every server runs under subreaper.py so that the
CPU time of forked session processes is counted.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
USER = "wharfbench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def children_map():
    """Parent pid -> child pids, for every process on the machine."""
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(root: int):
    kids = children_map()
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(kids.get(pid, []))
    return pids


def tree_cpu_seconds(root: int) -> float:
    """User+system time of the process tree under `root`, reaped children included."""
    total = 0
    for pid in tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime are fields 14-17 of stat(5); index from state (3).
        total += sum(int(fields[i]) for i in range(11, 15))
    return total / CLK_TCK


class Server:
    """A server process tree started under the subreaper."""

    def __init__(self, name, cmd, ports, log):
        self.name = name
        self.cmd = cmd
        self.ports = ports
        self.log = log
        self.launch()

    def launch(self):
        self.proc = subprocess.Popen(
            ["python3", str(BENCH / "subreaper.py"), *map(str, self.cmd)],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT)

    def relaunch(self):
        """A fresh process, for measurements that a grown heap would distort."""
        self.stop()
        self.launch()
        for port in self.ports.values():
            self.wait_listening(port)

    def wait_listening(self, port, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {Path(self.log).read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {port}: {Path(self.log).read_text()}")

    def tree(self):
        return tree(self.proc.pid)

    def cpu_seconds(self) -> float:
        """User+system time of the whole tree, reaped children included."""
        return tree_cpu_seconds(self.proc.pid)

    def pss_kib(self) -> int:
        total = 0
        for pid in self.tree()[1:]:  # the wrapper itself is not the server
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total

    def processes(self) -> int:
        return len(self.tree()) - 1

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                for pid in reversed(self.tree()):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(5)


class Scratch:
    """The scratch folder: user, keys, certificate, data, and every configuration."""

    def __init__(self, path: Path, password: str):
        self.path = path
        self.password = password
        for d in ["etc", "keys", "run", "log", "src/small", "peer-home/up", "wharf"]:
            (path / d).mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o755)
        self.peer_home = path / "peer-home"
        self.key = path / "keys" / "id_ed25519"
        self.cert = path / "etc" / "cert.pem"
        self.cert_key = path / "etc" / "cert.key"
        self.big = path / "src" / "big.bin"
        self.mid = path / "src" / "mid.bin"  # group g: what each of many clients moves

    def create_user(self):
        if subprocess.run(["id", USER], capture_output=True).returncode != 0:
            run("useradd", "--no-create-home", "--home-dir", self.peer_home, "--shell", "/bin/sh", USER)
        else:
            run("usermod", "--home", self.peer_home, "--shell", "/bin/sh", USER)
        run("chpasswd", input=f"{USER}:{self.password}\n")

    def remove_user(self):
        subprocess.run(["userdel", USER], capture_output=True)

    def make_keys(self):
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key)
        for kind in ["ed25519", "ecdsa"]:
            run("ssh-keygen", "-q", "-t", kind, "-N", "", "-f", self.path / "etc" / f"ssh_host_{kind}_key")
        # One certificate for every TLS server, so each handshake costs the same.
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "30", "-subj", "/CN=localhost", "-keyout", self.cert_key, "-out", self.cert)
        ssh = self.peer_home / ".ssh"
        ssh.mkdir(exist_ok=True)
        shutil.copy(f"{self.key}.pub", ssh / "authorized_keys")

    def make_files(self, size_mib: int, small_count: int, mid_mib: int = 0):
        with open(self.big, "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
        if mid_mib:
            with open(self.mid, "wb") as f:
                for _ in range(mid_mib):
                    f.write(os.urandom(1 << 20))
        for i in range(small_count):
            (self.path / "src" / "small" / f"f{i:04d}").write_bytes(os.urandom(4096))

    def share_big_file(self, *homes):
        """The same inode in every home, so downloads read the same cached pages."""
        for source in [self.big, self.mid]:
            if not source.exists():
                continue
            for home in homes:
                target = Path(home) / source.name
                if not target.exists():
                    os.link(source, target)
            os.chmod(source, 0o644)

    def hand_peer_home_to_user(self):
        run("chown", "-R", f"{USER}:{USER}", self.peer_home)


def start_wharf(scratch: Scratch, binary: Path, name="wharf", store=None, home=None) -> Server:
    """A Wharf node. `store`: a postgres:// URL (the node joins that cluster store; the
    account is made by the first node only); `home`: the account's home (shared by nodes)."""
    root = scratch.path / name
    config_dir = root / "config"
    init = [binary, "init", config_dir]
    if store:
        init += ["--store", store, "--node", name]
    run(*init)
    config_file = config_dir / "wharf.toml"
    ports = {"ssh": free_port(), "ftp": free_port(), "ftps-implicit": free_port(), "https": free_port(),
             "manager": free_port()}
    config = config_file.read_text()
    for default, port in [(2222, ports["ssh"]), (2121, ports["ftp"]), (2990, ports["ftps-implicit"]),
                          (8443, ports["https"]), (9443, ports["manager"])]:
        config = config.replace(f"port = {default}\n", f"port = {port}\n")
    config = config.replace('address = "::"', 'address = "127.0.0.1"')
    # Same policy as the vsftpd peer: TLS optional on the control port, so one port serves
    # both the FTP and the explicit FTPS rows; data-channel session reuse stays required.
    config = config.replace('tls = "required"', 'tls = "optional"')
    config = config.replace("max_connections = 256", "max_connections = 4000")
    config = config.replace("max_per_ip = 20", "max_per_ip = 4000")
    # The peers limit no connection rate; every login row opens more than [ban]'s default
    # 600 connections a minute from one address.
    config += "\n[ban]\nconnection_rate = 0\n"
    # libssh2 1.10 (Debian 12's curl) needs a plain SHA-2 MAC, which sshd offers by default.
    config = config.replace(
        '# macs = ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"]',
        'macs = ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "hmac-sha2-256"]')
    config = config.replace('certificate = "wharf-data/tls/certificate.pem"', f'certificate = "{scratch.cert}"')
    config = config.replace('key = "wharf-data/tls/key.pem"', f'key = "{scratch.cert_key}"')
    config_file.write_text(config)
    home = Path(home) if home else root / "home"
    home.mkdir(exist_ok=True)
    add = subprocess.run([str(c) for c in (binary, "--config", config_file, "account", "add", USER, "--home", home,
                          "--ssh-key", f"{scratch.key}.pub", "--password-stdin")],
                         input=scratch.password + "\n", cwd=config_dir, capture_output=True, text=True)
    if add.returncode != 0 and not (store and "already exists" in add.stderr):
        raise RuntimeError(f"{name}: account add failed: {add.stderr}")
    server = Server(name, [binary, "--config", config_file, "serve"], ports, scratch.path / "log" / f"{name}.log")
    for port in ports.values():
        server.wait_listening(port)
    server.home = home
    server.kind = "wharf"
    return server


def start_postgres(scratch: Scratch):
    """A throwaway PostgreSQL (scripts/throwaway-postgres, stopped when this process ends)
    with one empty database: its URL, and the server's (postmaster's) pid. Same settings as
    the test suite's: fsync off."""
    port = free_port()
    folder = Path(f"/tmp/wharf-bench-pg-{os.getpid()}")
    base = run(ROOT / "scripts" / "throwaway-postgres", folder, port, os.getpid()).stdout.strip()
    run("psql", "-q", f"{base}/postgres", "-c", "CREATE DATABASE bench")
    postmaster = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    return f"{base}/bench", postmaster


class OnStore:
    """A Wharf server (one node or a balanced pair) measured with the PostgreSQL server it
    uses: its CPU includes the database's, which a SQLite node spends in its own process."""

    def __init__(self, server, postmaster: int):
        self.server = server
        self.postmaster = postmaster
        self.name = server.name
        self.home = server.home
        self.ports = server.ports
        self.kind = "wharf"

    def cpu_seconds(self) -> float:
        return self.server.cpu_seconds() + tree_cpu_seconds(self.postmaster)

    def pss_kib(self) -> int:
        return self.server.pss_kib()

    def stop(self):
        self.server.stop()


def stop_postgres():
    subprocess.run([str(ROOT / "scripts" / "throwaway-postgres"), "--stop", f"/tmp/wharf-bench-pg-{os.getpid()}"],
                   capture_output=True)


class Balanced:
    """Several Wharf nodes behind one HAProxy (TCP, round robin): measured as one server,
    its CPU the sum of the balancer's and every node's."""

    def __init__(self, name, scratch: Scratch, nodes):
        self.name = name
        self.kind = "wharf"
        self.nodes = nodes
        self.home = nodes[0].home
        port = free_port()
        self.ports = {"ssh": port}
        backends = "\n".join(f"    server {n.name} 127.0.0.1:{n.ports['ssh']}" for n in nodes)
        config = scratch.path / "etc" / f"{name}-haproxy.cfg"
        config.write_text(f"""global
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend ssh
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance roundrobin
{backends}
""")
        self.balancer = Server(f"{name}-haproxy", ["haproxy", "-db", "-f", config], self.ports,
                               scratch.path / "log" / f"{name}-haproxy.log")
        self.balancer.wait_listening(port)

    def cpu_seconds(self) -> float:
        return self.balancer.cpu_seconds() + sum(n.cpu_seconds() for n in self.nodes)

    def pss_kib(self) -> int:
        return self.balancer.pss_kib() + sum(n.pss_kib() for n in self.nodes)

    def stop(self):
        self.balancer.stop()
        for node in self.nodes:
            node.stop()


def start_sshd(scratch: Scratch) -> Server:
    port = free_port()
    etc = scratch.path / "etc"
    config = etc / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {etc}/ssh_host_ed25519_key
HostKey {etc}/ssh_host_ecdsa_key
PidFile {scratch.path}/run/sshd.pid
AllowUsers {USER}
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 1000
MaxSessions 10
LogLevel ERROR
Subsystem sftp internal-sftp
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation folder sshd insists on
    server = Server("openssh", ["/usr/sbin/sshd", "-D", "-e", "-f", config], {"ssh": port},
                    scratch.path / "log" / "sshd.log")
    server.wait_listening(port)
    server.home = scratch.peer_home
    return server


def start_vsftpd(scratch: Scratch) -> Server:
    port = free_port()
    # Group g holds up to 128 data connections at once: a thousand passive ports.
    low = 20000 + (os.getpid() % 40) * 1000
    config = scratch.path / "etc" / "vsftpd.conf"
    config.write_text(f"""listen=YES
listen_address=127.0.0.1
listen_port={port}
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
pasv_enable=YES
pasv_min_port={low}
pasv_max_port={low + 999}
port_enable=YES
seccomp_sandbox=NO
pam_service_name=vsftpd
max_clients=4000
max_per_ip=4000
xferlog_enable=NO
ssl_enable=YES
rsa_cert_file={scratch.cert}
rsa_private_key_file={scratch.cert_key}
allow_anon_ssl=NO
force_local_logins_ssl=NO
force_local_data_ssl=NO
require_ssl_reuse=YES
ssl_ciphers=HIGH
""")
    Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)
    server = Server("vsftpd", ["/usr/sbin/vsftpd", config], {"ftp": port}, scratch.path / "log" / "vsftpd.log")
    server.wait_listening(port)
    server.home = scratch.peer_home
    return server


def start_nginx(scratch: Scratch) -> Server:
    port = free_port()
    run_dir = scratch.path / "run"
    config = scratch.path / "etc" / "nginx.conf"
    temp = "\n".join(f"    {kind}_temp_path {run_dir}/nginx-{kind};"
                     for kind in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"])
    config.write_text(f"""daemon off;
master_process on;
worker_processes auto;
user {USER};
pid {run_dir}/nginx.pid;
error_log {scratch.path}/log/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
{temp}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {scratch.cert};
        ssl_certificate_key {scratch.cert_key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {scratch.peer_home};
        location /up/ {{
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
        }}
    }}
}}
""")
    server = Server("nginx", ["/usr/sbin/nginx", "-c", config, "-p", scratch.path], {"https": port},
                    scratch.path / "log" / "nginx.log")
    server.wait_listening(port)
    server.home = scratch.peer_home
    return server
