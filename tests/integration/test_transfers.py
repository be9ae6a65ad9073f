"""Client-side transfers against real peers: OpenSSH's sshd and a second Wharf over SFTP,
local folders, over 127.0.0.1 and ::1.

Each test writes `[[location]]` and `[[transfer]]` sections into one Wharf's configuration
and runs the transfer with `wharf transfer run`, or lets `wharf serve` run it on its own
(interval, event). What arrived is compared by SHA-256 with what was sent, and the audit
trail is read back for the 6xxxx events.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, WharfServer, free_port, random_file, sha256
from tls_certs import make_ca_and_leaf


def fingerprint(public_key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key)], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


class Sshd:
    """OpenSSH's sshd on a free port of 127.0.0.1 and ::1, letting in this machine's user
    with the test's key only (no password), SFTP by internal-sftp, commands by the shell."""

    def __init__(self, root: Path, authorized: Path):
        if os.geteuid() != 0:
            pytest.skip("sshd needs root to start as a server for this machine's user")
        self.root = root
        self.port = free_port()
        etc = root / "sshd"
        etc.mkdir()
        self.host_key = etc / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)
        (etc / "authorized_keys").write_text(authorized.read_text())
        config = etc / "sshd_config"
        config.write_text(f"""Port {self.port}
ListenAddress 127.0.0.1
ListenAddress ::1
HostKey {self.host_key}
PidFile {etc}/sshd.pid
AuthorizedKeysFile {etc}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
Subsystem sftp internal-sftp
""")
        Path("/run/sshd").mkdir(exist_ok=True)
        self.log = etc / "sshd.log"
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                import socket
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"sshd did not listen: {self.log.read_text()}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def sshd(tmp_path, server):
    s = Sshd(tmp_path, Path(str(server.key) + ".pub"))
    yield s
    s.stop()


@pytest.fixture
def peer(tmp_path):
    """A second Wharf: the partner's SFTP server."""
    (tmp_path / "peer").mkdir()
    p = WharfServer(tmp_path / "peer")
    yield p
    p.stop()


def wharf_fingerprint(peer: WharfServer) -> str:
    return fingerprint(peer.root / "wharf-data" / "keys" / "ssh_host_ed25519_key.pub")


def configure(server: WharfServer, text: str):
    with open(server.root / "wharf.toml", "a") as f:
        f.write(text)
    check = server.wharf("check-config")
    assert check.returncode == 0, check.stdout + check.stderr


def local(name: str, folder: Path) -> str:
    """A `[[location]]` of type local named `name` over `folder`."""
    return f'[[location]]\nname = "{name}"\ntype = "local"\nfolder = "{folder}"\n'


def local_pair(server: WharfServer, out: Path, inbox: Path, transfer: str):
    """Locations `out` and `in` over the two folders, and one `[[transfer]]` from the first
    to the second whose other keys `transfer` gives."""
    configure(server, f"""
[[location]]
name = "out"
type = "local"
folder = "{out}"

[[location]]
name = "in"
type = "local"
folder = "{inbox}"

[[transfer]]
source = "out"
destination = "in"
{transfer}""")


def run_transfer(server: WharfServer, name: str, ok=True):
    result = server.wharf("transfer", "run", name)
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def names(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def transfer_events(server: WharfServer, name: str):
    return [e for e in server.events() if e["name"].startswith("transfer.")]


def make_files(folder: Path, count: int, size: int, age: int = 3600):
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for i in range(count):
        path = random_file(folder / f"f{i:03}.bin", size + i)
        sums[path.name] = sha256(path)
        old = time.time() - age
        os.utime(path, (old, old))
    return sums


def test_local_folders_every_file_once_sources_moved_and_names_kept(server, tmp_path):
    out, inbox = tmp_path / "out", tmp_path / "in"
    sums = make_files(out / "sub", 3, 1000)
    sums.update(make_files(out, 2, 5000))
    inbox.mkdir()
    (inbox / "f000.bin").write_bytes(b"taken")
    local_pair(server, out, inbox, f"""name = "local"
destination_folder = "/"
recursive = true
files = "*.bin"
existing = "rename"
after = "move"
move_to = "/sent"
min_age = 0
""")
    run_transfer(server, "local")
    assert names(inbox) == ["f000.1.bin", "f000.bin", "f001.bin", "sub/f000.bin", "sub/f001.bin", "sub/f002.bin"]
    assert (inbox / "f000.bin").read_bytes() == b"taken"
    assert sha256(inbox / "f000.1.bin") == sums["f000.bin"] or sha256(inbox / "f000.1.bin") == sha256(out / "sent" / "f000.bin")
    assert names(out) == ["sent/f000.bin", "sent/f001.bin", "sent/sub/f000.bin", "sent/sub/f001.bin", "sent/sub/f002.bin"]
    for rel in names(inbox):
        if rel != "f000.bin":
            sent = rel.replace("f000.1.bin", "f000.bin")
            assert sha256(inbox / rel) == sha256(out / "sent" / sent), rel
    # A second run finds nothing new: nothing is sent twice.
    run_transfer(server, "local")
    assert len(names(inbox)) == 6
    events = transfer_events(server, "local")
    copied = [e for e in events if e["name"] == "transfer.file.copied"]
    assert len(copied) == 5
    assert all(e["sha256"] and e["bytes"] for e in copied)
    assert {e["path2"] for e in copied} >= {"/f000.1.bin", "/sub/f002.bin"}
    verified = [e for e in events if e["name"] == "transfer.file.verified"]
    assert {e["attrs"]["method"] for e in verified} == {"sha256 (local)"}
    handled = [e for e in events if e["name"] == "transfer.source.handled"]
    assert len(handled) == 5 and all(e["attrs"]["action"] == "moved" for e in handled)
    finished = [e for e in events if e["name"] == "transfer.run.finished"]
    assert [e["attrs"]["files"] for e in finished] == ["5", "0"]
    history = server.wharf("transfer", "history", "local", check=True).stdout
    assert "5 files" in history and "hand (" in history
    listed = server.wharf("transfer", "list", check=True).stdout
    assert "local" in listed and "idle" in listed


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_pull_from_openssh_and_push_to_a_second_wharf(server, sshd, peer, tmp_path, host):
    """Pull from OpenSSH (verified by running sha256sum there), push to Wharf (verified by
    check-file), over IPv4 and IPv6 literals; every file's SHA-256 compared."""
    remote = tmp_path / "bank-outbox"
    sums = make_files(remote, 6, 300_000)
    landing, returned = tmp_path / "landing", tmp_path / "returned"
    landing.mkdir()
    returned.mkdir()
    peer.add_account("finance")
    peer.start()
    known_hosts = tmp_path / "known_hosts"
    scan = subprocess.run(["ssh-keyscan", "-p", str(sshd.port), host], capture_output=True, text=True, timeout=30)
    known_hosts.write_text(scan.stdout)
    assert scan.stdout.strip(), scan.stderr
    configure(server, f"""
[[location]]
name = "bank"
type = "sftp"
host = "{host}"
port = {sshd.port}
username = "{os.environ.get('USER') or 'root'}"
key = "{server.key}"
known_hosts = "{known_hosts}"

{local('landing', landing)}
[[location]]
name = "finance"
type = "sftp"
host = "{host}"
port = {peer.port}
username = "finance"
key = "{peer.key}"
host_key = "{wharf_fingerprint(peer)}"

[[transfer]]
name = "pull"
source = "bank"
source_folder = "{remote}"
destination = "landing"
files = "re:\\\\.bin$"
after = "delete"
verify = "sha256"
min_age = 0

[[transfer]]
name = "push"
source = "landing"
destination = "finance"
destination_folder = "/incoming/invoices"
verify = "sha256"
min_age = 0

{local('returned', returned)}
[[transfer]]
name = "pull-back"
source = "finance"
source_folder = "/incoming/invoices"
destination = "returned"
min_age = 0
""")
    run_transfer(server, "pull")
    assert {p: sha256(landing / p) for p in names(landing)} == sums
    assert names(remote) == []
    run_transfer(server, "push")
    delivered = peer.homes / "finance" / "incoming" / "invoices"
    assert {p: sha256(delivered / p) for p in names(delivered)} == sums
    # And back from the partner's Wharf: a pull over SFTP too.
    run_transfer(server, "pull-back")
    assert {p: sha256(returned / p) for p in names(returned)} == sums
    events = transfer_events(server, "push")
    methods = {(e["attrs"]["transfer"], e["attrs"]["method"]) for e in events if e["name"] == "transfer.file.verified"}
    assert methods == {("pull", "sha256 (local)"), ("push", "sha256 (check-file)"),
                       ("pull-back", "sha256 (local)")}
    # The partner's own trail shows the uploads as any client's.
    assert len([e for e in peer.events() if e["name"] == "upload.finished"]) == 6


def test_push_to_openssh_verifies_by_sha256sum(server, sshd, tmp_path):
    outbox = tmp_path / "outbox"
    sums = make_files(outbox, 3, 70_000)
    remote = tmp_path / "partner-in"
    configure(server, f"""
{local('outbox', outbox)}
[[location]]
name = "partner"
type = "sftp"
host = "::1"
port = {sshd.port}
username = "{os.environ.get('USER') or 'root'}"
key = "{server.key}"
host_key = ["SHA256:not-this-one-0000000000000000", "{fingerprint(Path(str(sshd.host_key) + '.pub'))}"]

[[transfer]]
name = "push"
source = "outbox"
destination = "partner"
destination_folder = "{remote}/deep/er"
min_age = 0
""")
    run_transfer(server, "push")
    assert {p: sha256(remote / "deep" / "er" / p) for p in names(remote / "deep" / "er")} == sums
    verified = [e for e in server.events() if e["name"] == "transfer.file.verified"]
    assert {e["attrs"]["method"] for e in verified} == {"sha256 (sha256sum)"}
    # Sources kept (the default), and never sent again.
    assert len(names(outbox)) == 3
    run_transfer(server, "push")
    assert len([e for e in server.events() if e["name"] == "transfer.file.copied"]) == 3


def test_a_changed_or_unknown_host_key_is_refused_before_any_login(server, sshd, tmp_path):
    outbox = tmp_path / "outbox"
    make_files(outbox, 1, 100)
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known_hosts = tmp_path / "known_hosts"
    # The known_hosts file names the host with another key: the server's key CHANGED.
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {Path(str(other) + '.pub').read_text().split()[0]} "
                           f"{Path(str(other) + '.pub').read_text().split()[1]}\n")
    configure(server, f"""
{local('outbox', outbox)}
[[location]]
name = "pinned"
type = "sftp"
host = "127.0.0.1"
port = {sshd.port}
username = "root"
key = "{server.key}"
host_key = "{fingerprint(Path(str(other) + '.pub'))}"

[[location]]
name = "known"
type = "sftp"
host = "127.0.0.1"
port = {sshd.port}
username = "root"
key = "{server.key}"
known_hosts = "{known_hosts}"

[[transfer]]
name = "to-pinned"
source = "outbox"
destination = "pinned"
destination_folder = "{tmp_path}/never"
min_age = 0

[[transfer]]
name = "to-known"
source = "outbox"
destination = "known"
destination_folder = "{tmp_path}/never"
min_age = 0
""")
    for name, says in [("to-pinned", "is not a pinned one"), ("to-known", "CHANGED")]:
        result = run_transfer(server, name, ok=False)
        assert result.returncode != 0
        failed = [e for e in server.events() if e["name"] == "transfer.location.failed" and e["attrs"]["transfer"] == name]
        assert failed and says in failed[-1]["message"], failed
    assert not (tmp_path / "never").exists()
    # Refused before authentication: sshd never saw a login.
    assert "Accepted" not in sshd.log.read_text()


def test_a_refused_login_is_a_clear_failure_and_the_run_is_tried_again(server, peer, tmp_path):
    outbox = tmp_path / "outbox"
    make_files(outbox, 2, 1000)
    peer.add_account("finance", password="the-right-password-1")
    peer.start()
    (tmp_path / "secret").write_text("a-wrong-password\n")
    configure(server, f"""
{local('outbox', outbox)}
[[location]]
name = "finance"
type = "sftp"
host = "127.0.0.1"
port = {peer.port}
username = "finance"
password = "file:{tmp_path}/secret"
host_key = "{wharf_fingerprint(peer)}"

[[transfer]]
name = "push"
source = "outbox"
destination = "finance"
interval = 3600
retry_wait = 1
attempts = 3
min_age = 0
""")
    server.start()
    failed = server.wait_event("transfer.location.failed", timeout=20)
    assert "refused the login" in failed["message"] and "a-wrong-password" not in str(failed)
    # Tried again on its own after the wait, and refused again.
    deadline = time.time() + 20
    while time.time() < deadline:
        runs = [e for e in server.events() if e["name"] == "transfer.run.started"]
        if any(e["attrs"]["trigger"] == "retry" for e in runs):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"no retry: {[e['attrs'] for e in runs]}")
    # Mended: the right password, a reload, and the next retry delivers.
    (tmp_path / "secret").write_text("the-right-password-1\n")
    server.wharf("reload", check=True)
    deadline = time.time() + 30
    final = lambda: [n for n in names(peer.homes / "finance") if not n.endswith(".wharf-part")]  # noqa: E731
    while time.time() < deadline and len(final()) < 2:
        time.sleep(0.3)
    assert len(final()) == 2 and names(peer.homes / "finance") == final()
    server.stop()


@pytest.mark.parametrize("existing", ["skip", "replace", "fail"])
def test_a_name_taken_at_the_destination_follows_the_existing_rule(server, tmp_path, existing):
    out, inbox = tmp_path / "out", tmp_path / "in"
    sums = make_files(out, 2, 1000)
    inbox.mkdir()
    (inbox / "f000.bin").write_bytes(b"already here")
    local_pair(server, out, inbox, f"""name = "t"
existing = "{existing}"
min_age = 0
""")
    result = run_transfer(server, "t", ok=existing != "fail")
    assert sha256(inbox / "f001.bin") == sums["f001.bin"]
    events = server.events()
    if existing == "skip":
        assert (inbox / "f000.bin").read_bytes() == b"already here"
        [skipped] = [e for e in events if e["name"] == "transfer.file.skipped"]
        assert skipped["path"] == "/f000.bin" and "exists at the destination" in skipped["message"]
    elif existing == "replace":
        assert sha256(inbox / "f000.bin") == sums["f000.bin"]
    else:
        assert result.returncode != 0
        assert (inbox / "f000.bin").read_bytes() == b"already here"
        [failed] = [e for e in events if e["name"] == "transfer.file.failed"]
        assert failed["attrs"]["given_up"] == "true" and "exists" in failed["message"]
    assert names(inbox) == ["f000.bin", "f001.bin"]
    # Either way, a second run does nothing more.
    before = len(server.events())
    run_transfer(server, "t")
    later = [e["name"] for e in server.events()[before:]]
    assert later == ["transfer.run.started", "transfer.run.finished"], later


def test_a_file_still_growing_is_not_taken_before_its_age(server, tmp_path):
    out, inbox = tmp_path / "out", tmp_path / "in"
    out.mkdir()
    inbox.mkdir()
    fresh = out / "growing.csv"
    fresh.write_text("a,b\n")
    old = random_file(out / "old.csv", 100)
    os.utime(old, (time.time() - 600, time.time() - 600))
    local_pair(server, out, inbox, f"""name = "aged"
min_age = 60
""")
    run_transfer(server, "aged")
    assert names(inbox) == ["old.csv"]
    with open(fresh, "a") as f:
        f.write("c,d\n")
    os.utime(fresh, (time.time() - 120, time.time() - 120))
    run_transfer(server, "aged")
    assert names(inbox) == ["growing.csv", "old.csv"]
    assert (inbox / "growing.csv").read_text() == "a,b\nc,d\n"


def test_an_upload_triggers_a_push_and_an_interval_fires(server, peer, tmp_path):
    peer.add_account("partner")
    peer.start()
    home = server.add_account("alice")
    (home / "outgoing").mkdir(parents=True)
    elsewhere = tmp_path / "spool"
    elsewhere.mkdir()
    configure(server, f"""
{local('alice-outgoing', home / 'outgoing')}
{local('spool', elsewhere)}
[[location]]
name = "partner"
type = "sftp"
host = "::1"
port = {peer.port}
username = "partner"
key = "{peer.key}"
host_key = "{wharf_fingerprint(peer)}"

[[transfer]]
name = "on-upload"
source = "alice-outgoing"
destination = "partner"
destination_folder = "/from-alice"
on = ["upload.finished"]
on_path = "/outgoing/*"
on_accounts = ["alice"]
after = "delete"
min_age = 0

[[transfer]]
name = "every-two-seconds"
source = "spool"
destination = "partner"
destination_folder = "/spool"
interval = 2
min_age = 0
""")
    server.start()
    data = random_file(tmp_path / "report.pdf", 200_000)
    server.sftp("alice", f"put {data} /outgoing/report.pdf\n")
    deadline = time.time() + 20
    target = peer.homes / "partner" / "from-alice" / "report.pdf"
    while time.time() < deadline and not target.exists():
        time.sleep(0.2)
    assert target.exists() and sha256(target) == sha256(data)
    started = [e for e in server.events()
               if e["name"] == "transfer.run.started" and e["attrs"]["transfer"] == "on-upload"]
    assert any(e["attrs"]["trigger"].startswith("event ") and "upload.finished" in e["attrs"]["trigger"]
               for e in started), [e["attrs"] for e in started]
    deadline = time.time() + 10
    while time.time() < deadline and (home / "outgoing" / "report.pdf").exists():
        time.sleep(0.2)
    assert not (home / "outgoing" / "report.pdf").exists()
    # The interval: a file dropped in the spool arrives on its own.
    dropped = random_file(elsewhere / "late.txt", 1000)
    os.utime(dropped, (time.time() - 5, time.time() - 5))
    late = peer.homes / "partner" / "spool" / "late.txt"
    deadline = time.time() + 20
    while time.time() < deadline and not late.exists():
        time.sleep(0.2)
    assert late.exists() and sha256(late) == sha256(dropped)
    server.stop()


def test_kill_9_mid_transfer_of_200_files_then_every_file_arrives_once(server, peer, tmp_path):
    outbox = tmp_path / "outbox"
    sums = make_files(outbox, 200, 20_000)
    peer.add_account("finance")
    peer.start()
    configure(server, f"""
{local('outbox', outbox)}
[[location]]
name = "finance"
type = "sftp"
host = "127.0.0.1"
port = {peer.port}
username = "finance"
key = "{peer.key}"
host_key = "{wharf_fingerprint(peer)}"

[[transfer]]
name = "bulk"
source = "outbox"
destination = "finance"
destination_folder = "/in"
interval = 3600
after = "delete"
parallel = 4
rate = 1000000
retry_wait = 1
min_age = 0
""")
    server.start()
    delivered = peer.homes / "finance" / "in"
    deadline = time.time() + 30
    while time.time() < deadline and len(names(delivered)) < 40:
        time.sleep(0.05)
    assert 0 < len(names(delivered)) < 200, "the kill must land mid-run"
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server.start()
    deadline = time.time() + 90
    while time.time() < deadline and (len(names(outbox)) > 0 or len([n for n in names(delivered) if not n.startswith(".")]) < 200):
        time.sleep(0.3)
    arrived = names(delivered)
    assert arrived == sorted(sums), f"{len(arrived)} files: {[n for n in arrived if n not in sums][:5]}"
    assert {p: sha256(delivered / p) for p in arrived} == sums
    assert names(outbox) == []
    # Each file was delivered once: one upload of each final name at the partner.
    uploads = [e for e in peer.events() if e["name"] == "upload.finished"]
    finals = [e["path"] for e in uploads if not e["path"].rsplit("/", 1)[-1].startswith(".")]
    assert finals == [], "files are written under temporary names and renamed"
    renames = [e for e in peer.events() if e["name"] == "entry.renamed" and e.get("path2", "").startswith("/in/f")]
    assert sorted(e["path2"] for e in renames) == sorted(f"/in/{n}" for n in sums)
    runs = server.wharf("transfer", "history", "bulk", check=True).stdout
    assert "cut off" in runs
    server.stop()


# -- FTPS ---------------------------------------------------------------------------------

FTP_USER = "wharftransfer"
FTP_PASSWORD = "transfer-peer-Pw1"


def consecutive_ports(count: int) -> int:
    """The first of `count` consecutive free ports (a passive range)."""
    for _ in range(50):
        first = free_port()
        if all(free_port() == first + i for i in range(1, count)):
            return first
    raise RuntimeError("no consecutive free ports")


class Vsftpd:
    """vsftpd on a free port of 127.0.0.1 or ::1: explicit FTPS required for logins and
    data, TLS sessions resumed on data connections (require_ssl_reuse), a system user of
    its own whose files live in a folder of the test's."""

    def __init__(self, family: str):
        if os.geteuid() != 0:
            pytest.skip("vsftpd needs root to log a system user in")
        import tempfile
        self.scratch = Path(tempfile.mkdtemp(prefix="wharf-vsftpd-"))
        os.chmod(self.scratch, 0o755)
        self.files = self.scratch / "files"
        self.files.mkdir()
        os.chmod(self.files, 0o777)
        # vsftpd enters the user's home before `local_root`: "/" always exists.
        if subprocess.run(["id", FTP_USER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--no-create-home", "--home-dir", "/", "--shell", "/bin/sh",
                            FTP_USER], capture_output=True)
        subprocess.run(["chpasswd"], input=f"{FTP_USER}:{FTP_PASSWORD}\n", text=True, check=True)
        make_ca_and_leaf(self.scratch, sans="DNS:localhost,IP:127.0.0.1,IP:::1")
        self.ca, self.cert, key = self.scratch / "ca.pem", self.scratch / "leaf.pem", self.scratch / "leaf.key"
        self.port = free_port()
        low = consecutive_ports(8)
        listen = ("listen=YES\nlisten_address=127.0.0.1" if family == "127.0.0.1"
                  else "listen=NO\nlisten_ipv6=YES\nlisten_address6=::1")
        config = self.scratch / "vsftpd.conf"
        config.write_text(f"""{listen}
listen_port={self.port}
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
local_root={self.files}
pasv_enable=YES
pasv_min_port={low}
pasv_max_port={low + 7}
seccomp_sandbox=NO
pam_service_name=vsftpd
xferlog_enable=NO
ssl_enable=YES
rsa_cert_file={self.cert}
rsa_private_key_file={key}
allow_anon_ssl=NO
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=YES
ssl_ciphers=HIGH
""")
        Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)
        self.log = self.scratch / "vsftpd.log"
        self.proc = subprocess.Popen(["/usr/sbin/vsftpd", str(config)], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)
        import socket
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection((family, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"vsftpd did not listen: {self.log.read_text()}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        import shutil
        shutil.rmtree(self.scratch, ignore_errors=True)


def certificate_sha256(pem: Path) -> str:
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(pem)],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_push_to_and_pull_from_vsftpd_over_explicit_ftps(server, tmp_path, host):
    vsftpd = Vsftpd(host)
    try:
        outbox, back = tmp_path / "outbox", tmp_path / "back"
        sums = make_files(outbox, 5, 150_000)
        back.mkdir()
        (tmp_path / "ftp-password").write_text(FTP_PASSWORD + "\n")
        configure(server, f"""
{local('outbox', outbox)}
{local('back', back)}
[[location]]
name = "partner"
type = "ftps"
host = "{host}"
port = {vsftpd.port}
username = "{FTP_USER}"
password = "file:{tmp_path}/ftp-password"
ca = "{vsftpd.ca}"

[[transfer]]
name = "push"
source = "outbox"
destination = "partner"
destination_folder = "{vsftpd.files}/in/box"
min_age = 0

[[transfer]]
name = "pull"
source = "partner"
source_folder = "{vsftpd.files}/in/box"
destination = "back"
after = "delete"
min_age = 0
""")
        run_transfer(server, "push")
        delivered = vsftpd.files / "in" / "box"
        assert {p: sha256(delivered / p) for p in names(delivered)} == sums
        run_transfer(server, "pull")
        assert {p: sha256(back / p) for p in names(back)} == sums
        assert names(delivered) == []
        verified = [e for e in server.events() if e["name"] == "transfer.file.verified"]
        # vsftpd offers no digest: size; the local folder is read back.
        assert {(e["attrs"]["transfer"], e["attrs"]["method"]) for e in verified} == {
            ("push", "size"), ("pull", "sha256 (local)")}
        copied = [e for e in server.events() if e["name"] == "transfer.file.copied"]
        assert {e["protocol"] for e in copied} == {"ftps"}
        assert FTP_PASSWORD not in (server.root / "wharf-data" / "audit.jsonl").read_text()
    finally:
        vsftpd.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_explicit_and_implicit_ftps_to_a_second_wharf_verified_by_hash(server, peer, tmp_path, host):
    outbox, back = tmp_path / "outbox", tmp_path / "back"
    sums = make_files(outbox, 4, 90_000)
    back.mkdir()
    peer.add_account("finance", password="Quay-7-lantern-Pw")
    peer.start()
    (tmp_path / "pw").write_text("Quay-7-lantern-Pw\n")
    pin = certificate_sha256(peer.root / "wharf-data" / "tls" / "certificate.pem")
    configure(server, f"""
{local('outbox', outbox)}
{local('back', back)}
[[location]]
name = "explicit"
type = "ftps"
host = "{host}"
port = {peer.ftps_port}
username = "finance"
password = "file:{tmp_path}/pw"
certificate_sha256 = "{pin}"

[[location]]
name = "implicit"
type = "ftps"
tls = "implicit"
host = "{host}"
port = {peer.implicit_port}
username = "finance"
password = "file:{tmp_path}/pw"
certificate_sha256 = ["{'00' * 32}", "{pin}"]

[[transfer]]
name = "push"
source = "outbox"
destination = "explicit"
destination_folder = "/drop"
verify = "sha256"
min_age = 0

[[transfer]]
name = "pull"
source = "implicit"
source_folder = "/drop"
destination = "back"
min_age = 0
""")
    run_transfer(server, "push")
    drop = peer.homes / "finance" / "drop"
    assert {p: sha256(drop / p) for p in names(drop)} == sums
    run_transfer(server, "pull")
    assert {p: sha256(back / p) for p in names(back)} == sums
    verified = [e for e in server.events() if e["name"] == "transfer.file.verified"]
    assert {(e["attrs"]["transfer"], e["attrs"]["method"]) for e in verified} == {
        ("push", "sha256 (HASH)"), ("pull", "sha256 (local)")}


def test_an_ftps_certificate_not_pinned_or_not_vouched_for_is_refused(server, peer, tmp_path):
    outbox = tmp_path / "outbox"
    make_files(outbox, 1, 100)
    peer.add_account("finance", password="Quay-7-lantern-Pw")
    peer.add_ftp_service(tls="off")
    peer.start()
    (tmp_path / "pw").write_text("Quay-7-lantern-Pw\n")
    configure(server, f"""
{local('outbox', outbox)}
[[location]]
name = "wrong-pin"
type = "ftps"
host = "127.0.0.1"
port = {peer.ftps_port}
username = "finance"
password = "file:{tmp_path}/pw"
certificate_sha256 = "{'ab' * 32}"

[[location]]
name = "system-cas"
type = "ftps"
host = "127.0.0.1"
port = {peer.ftps_port}
username = "finance"
password = "file:{tmp_path}/pw"

[[location]]
name = "plain"
type = "ftp"
host = "127.0.0.1"
port = {peer.ftp_port}
username = "finance"
password = "file:{tmp_path}/pw"

[[transfer]]
name = "to-wrong-pin"
source = "outbox"
destination = "wrong-pin"
min_age = 0

[[transfer]]
name = "to-system-cas"
source = "outbox"
destination = "system-cas"
min_age = 0

[[transfer]]
name = "to-plain"
source = "outbox"
destination = "plain"
destination_folder = "/plain"
min_age = 0
""")
    for name, says in [("to-wrong-pin", "is not a pinned one"), ("to-system-cas", "certificate")]:
        assert run_transfer(server, name, ok=False).returncode != 0
        failed = [e for e in server.events() if e["name"] == "transfer.location.failed" and e["attrs"]["transfer"] == name]
        assert failed and says in failed[-1]["message"], failed
    # Plain FTP works when a location names it so.
    run_transfer(server, "to-plain")
    assert names(peer.homes / "finance" / "plain") == ["f000.bin"]
    # A TLS key on a plain location is refused at load, with its line.
    with open(server.root / "wharf.toml", "a") as f:
        f.write('\n[[location]]\nname = "odd"\ntype = "ftp"\nhost = "127.0.0.1"\nusername = "x"\npassword = "env:X"\ntls = "implicit"\n')
    check = server.wharf("check-config")
    assert check.returncode == 1 and 'location[4].tls: does not apply to type = "ftp"' in check.stderr


# -- HTTPS (WebDAV) ------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost"])
def test_push_to_and_pull_from_a_second_wharf_over_webdav(server, peer, tmp_path, host):
    outbox, back = tmp_path / "outbox", tmp_path / "back"
    sums = make_files(outbox / "q1", 3, 400_000)
    sums = {f"q1/{k}": v for k, v in sums.items()}
    back.mkdir()
    peer.add_account("finance", password="Quay-7-lantern-Pw")
    peer.start()
    (tmp_path / "pw").write_text("Quay-7-lantern-Pw\n")
    pin = certificate_sha256(peer.root / "wharf-data" / "tls" / "certificate.pem")
    configure(server, f"""
{local('outbox', outbox)}
{local('back', back)}
[[location]]
name = "dav"
type = "https"
url = "https://{host}:{peer.https_port}/dav/"
username = "finance"
password = "file:{tmp_path}/pw"
certificate_sha256 = "{pin}"

[[transfer]]
name = "push"
source = "outbox"
destination = "dav"
destination_folder = "/reports"
recursive = true
min_age = 0

[[transfer]]
name = "pull"
source = "dav"
source_folder = "/reports"
recursive = true
destination = "back"
after = "move"
move_to = "/archive"
min_age = 0
""")
    run_transfer(server, "push")
    landed = peer.homes / "finance" / "reports"
    assert {p: sha256(landed / p) for p in names(landed)} == sums
    run_transfer(server, "pull")
    assert {p: sha256(back / p) for p in names(back)} == sums
    assert names(landed) == []
    assert len(names(peer.homes / "finance" / "archive")) == 3
    copied = [e for e in server.events() if e["name"] == "transfer.file.copied"]
    assert {e["protocol"] for e in copied} == {"webdav"} and len(copied) == 6
    # A wrong password is a clear refusal.
    (tmp_path / "pw").write_text("not-it\n")
    (outbox / "late.txt").write_text("x")
    os.utime(outbox / "late.txt", (time.time() - 60, time.time() - 60))
    assert run_transfer(server, "push", ok=False).returncode != 0
    failed = [e for e in server.events() if e["name"] == "transfer.location.failed"]
    assert failed and "refused the login" in failed[-1]["message"]


# -- The whole chain ----------------------------------------------------------------------

def test_invoices_pulled_from_the_bank_checked_and_valid_ones_delivered_to_finance(server, sshd, tmp_path):
    """The administrator's sentence: every night pull invoices from the bank's SFTP server,
    check their signatures, deliver the valid ones to the finance FTPS server, once each."""
    vsftpd = Vsftpd("127.0.0.1")
    try:
        bank_out = tmp_path / "bank-out"
        bank_out.mkdir()
        from test_handlers import make_key, sign
        (tmp_path / "bank").mkdir()
        (tmp_path / "forger").mkdir()
        bank_key, bank_pub = make_key(tmp_path / "bank")
        forger_key, _ = make_key(tmp_path / "forger")
        invoices = {}
        for name, key in [("INV-1001.xml", bank_key), ("INV-1002.xml", bank_key), ("INV-1003.xml", forger_key)]:
            path = bank_out / name
            path.write_text(f"<invoice id='{name}'>{os.urandom(8).hex()}</invoice>\n")
            sign(key, path, Path(str(path) + ".sig"))
            invoices[name] = sha256(path)
        old = time.time() - 600
        for p in bank_out.iterdir():
            os.utime(p, (old, old))
        incoming, valid, quarantine = tmp_path / "incoming", tmp_path / "valid", tmp_path / "quarantine"
        for folder in (incoming, valid):
            folder.mkdir()
        (tmp_path / "ftp-password").write_text(FTP_PASSWORD + "\n")
        configure(server, f"""
[[location]]
name = "bank"
type = "sftp"
host = "127.0.0.1"
port = {sshd.port}
username = "root"
key = "{server.key}"
host_key = "{fingerprint(Path(str(sshd.host_key) + '.pub'))}"

{local('incoming', incoming)}
{local('valid', valid)}
[[location]]
name = "finance"
type = "ftps"
host = "127.0.0.1"
port = {vsftpd.port}
username = "{FTP_USER}"
password = "file:{tmp_path}/ftp-password"
ca = "{vsftpd.ca}"

[[transfer]]
name = "bank-invoices"
source = "bank"
source_folder = "{bank_out}"
files = "re:/INV-\\\\d+\\\\.xml(\\\\.sig)?$"
destination = "incoming"
cron = "0 2 * * *"
after = "delete"
verify = "sha256"

[[handler]]
name = "check-invoices"
on = ["transfer.file.copied"]
transfers = ["bank-invoices"]
path = "*.xml"

[handler.verify-signature]
keys = ["{bank_pub}"]
wait = 30
move_to = "{valid}/${{NAME}}"
quarantine = "{quarantine}"

[[transfer]]
name = "to-finance"
source = "valid"
files = "*.xml"
destination = "finance"
destination_folder = "{vsftpd.files}/invoices"
on = ["signature.valid"]
after = "delete"
min_age = 0
""")
        server.start()
        # The night comes early: the nightly transfer, run by hand while the server runs.
        run_transfer(server, "bank-invoices")
        delivered = vsftpd.files / "invoices"
        deadline = time.time() + 40
        # Until both are in place: a copy in progress shows as its temporary name.
        while time.time() < deadline and names(delivered) != ["INV-1001.xml", "INV-1002.xml"]:
            time.sleep(0.3)
        assert names(delivered) == ["INV-1001.xml", "INV-1002.xml"]
        for name in names(delivered):
            assert sha256(delivered / name) == invoices[name]
        assert list(bank_out.iterdir()) == []
        server.wait_event("file.quarantined", timeout=20)
        assert [p for p in quarantine.rglob("*INV-1003.xml") if p.is_file()], list(quarantine.rglob("*"))
        events = server.events()
        assert len([e for e in events if e["name"] == "signature.valid"]) == 2
        invalid = [e for e in events if e["name"] == "signature.invalid"]
        assert len(invalid) == 1 and invalid[0]["path"].endswith("INV-1003.xml")
        to_finance = [e for e in events if e["name"] == "transfer.file.copied" and e["attrs"]["transfer"] == "to-finance"]
        assert sorted(e["path"] for e in to_finance) == ["/INV-1001.xml", "/INV-1002.xml"]
        # Once each, however many runs the two valid signatures started.
        time.sleep(2)
        assert len([e for e in server.events() if e["name"] == "transfer.file.copied"
                    and e["attrs"]["transfer"] == "to-finance"]) == 2
        server.stop()
    finally:
        vsftpd.stop()


# -- A cluster -------------------------------------------------------------------------

def test_in_a_cluster_one_node_runs_a_transfer_and_another_takes_it_over_when_it_dies(cluster, peer, tmp_path):
    outbox = tmp_path / "shared-outbox"
    sums = make_files(outbox, 120, 30_000)
    peer.add_account("finance")
    peer.start()
    nodes = [cluster.node("a"), cluster.node("b")]
    for node in nodes:
        configure(node, f"""
[handlers]
lease = 3

{local('outbox', outbox)}
[[location]]
name = "finance"
type = "sftp"
host = "::1"
port = {peer.port}
username = "finance"
key = "{peer.key}"
host_key = "{wharf_fingerprint(peer)}"

[[transfer]]
name = "bulk"
source = "outbox"
destination = "finance"
destination_folder = "/in"
interval = 3600
after = "delete"
parallel = 2
rate = 600000
retry_wait = 1
min_age = 0
""")
    for node in nodes:
        node.start()
    delivered = peer.homes / "finance" / "in"
    deadline = time.time() + 30
    while time.time() < deadline and len(names(delivered)) < 20:
        time.sleep(0.05)
    listed = nodes[0].wharf("transfer", "list", "--json", check=True).stdout
    import json
    state = json.loads(listed.splitlines()[0])["state"]
    assert state.startswith("running on "), state
    holder = state.removeprefix("running on ")
    dying = cluster.nodes[holder]
    other = next(n for name, n in cluster.nodes.items() if name != holder)
    assert 0 < len(names(delivered)) < 120
    dying.proc.send_signal(signal.SIGKILL)
    dying.proc.wait()
    deadline = time.time() + 90
    while time.time() < deadline and (names(outbox) or len([n for n in names(delivered) if not n.startswith(".")]) < 120):
        time.sleep(0.3)
    assert {p: sha256(delivered / p) for p in names(delivered)} == sums
    assert names(outbox) == []
    renames = [e for e in peer.events() if e["name"] == "entry.renamed" and e.get("path2", "").startswith("/in/f")]
    assert sorted(e["path2"] for e in renames) == sorted(f"/in/{n}" for n in sums)
    runs = other.wharf("transfer", "history", "bulk", "--json", check=True).stdout
    by_node = {json.loads(line)["node"] for line in runs.splitlines()}
    assert by_node == {holder, other.root.name}, by_node
    # The dead node's run is marked cut off by the living one once its lease ran out.
    deadline = time.time() + 20
    while time.time() < deadline:
        runs = [json.loads(line) for line in
                other.wharf("transfer", "history", "bulk", "--json", check=True).stdout.splitlines()]
        dead = [r for r in runs if r["node"] == holder]
        if dead and all(r["state"] == "failure" and "cut off" in (r["message"] or "") for r in dead):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(runs)


# -- The Manager ---------------------------------------------------------------------------

def test_the_manager_lists_transfers_and_runs_one_on_demand(server, tmp_path):
    from manager_client import Browser, api
    from test_manager import PASSWORD, add_admin, token
    out, inbox = tmp_path / "out", tmp_path / "in"
    make_files(out, 2, 500)
    inbox.mkdir()
    local_pair(server, out, inbox, f"""name = "nightly"
cron = "0 2 * * *"
min_age = 0
""")
    add_admin(server, "opie", "operator")
    add_admin(server, "audi", "auditor")
    operator = token(server, "opie-ci", "opie", "operator")
    auditor = token(server, "audi-ci", "audi", "auditor")
    server.start()
    status, body = api(server, "GET", "/api/v1/transfers", auditor)
    assert status == 200, body
    [nightly] = body["transfers"]
    assert nightly["name"] == "nightly" and nightly["when"] == 'cron "0 2 * * *"'
    assert nightly["state"] == "idle" and nightly["last_run"] is None
    assert api(server, "POST", "/api/v1/transfers/nightly/run", auditor)[0] == 403
    assert api(server, "POST", "/api/v1/transfers/nosuch/run", operator)[0] == 404
    status, body = api(server, "POST", "/api/v1/transfers/nightly/run", operator)
    assert status == 200, body
    requested = server.wait_event("transfer.run.requested")
    assert requested["attrs"]["admin"] == "opie" and requested["attrs"]["target"] == "nightly"
    started = server.wait_event("transfer.run.started")
    assert started["attrs"]["trigger"] == "manager (opie)"
    server.wait_event("transfer.run.finished")
    assert names(inbox) == ["f000.bin", "f001.bin"]
    status, body = api(server, "GET", "/api/v1/transfers/nightly/runs", auditor)
    assert status == 200 and body["runs"][0]["files"] == 2 and body["runs"][0]["trigger"] == "manager (opie)"
    # The console: the table, and the operator's button.
    browser = Browser(server)
    browser.login("opie", PASSWORD)
    status, _, page, _ = browser.request("GET", "/transfers")
    assert status == 200 and "nightly" in page and "run now" in page and "manager (opie)" in page
    (out / "late.bin").write_bytes(b"late")
    os.utime(out / "late.bin", (time.time() - 60, time.time() - 60))
    status, _, _, _ = browser.request("POST", "/transfers", form={"name": "nightly", "csrf": browser.csrf})
    assert status == 303
    deadline = time.time() + 15
    while time.time() < deadline and "late.bin" not in names(inbox):
        time.sleep(0.2)
    assert "late.bin" in names(inbox)
    server.stop()


def test_on_a_terminal_each_file_gets_a_progress_bar(server, tmp_path):
    out, inbox = tmp_path / "out", tmp_path / "in"
    make_files(out, 3, 300_000)
    inbox.mkdir()
    local_pair(server, out, inbox, f"""name = "t"
parallel = 2
min_age = 0
""")
    import shlex
    command = shlex.join([str(BIN), "--config", str(server.root / "wharf.toml"), "transfer", "run", "t"])
    # `script` gives the command a terminal, as an operator's shell would.
    shown = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stdout
    assert "100%" in shown.stdout and "[#" in shown.stdout and "\x1b[" in shown.stdout
    assert shown.stdout.count("copied ") == 3
    # Not a terminal: one plain line per file.
    random_file(out / "new.bin", 1000)
    os.utime(out / "new.bin", (time.time() - 60, time.time() - 60))
    plain = server.wharf("transfer", "run", "t")
    assert "\x1b[" not in plain.stdout and plain.stdout.splitlines()[0].split() == ["copied", "new.bin"]


# -- Hostile peers -------------------------------------------------------------------------

def test_a_hostile_peer_s_names_never_lead_outside_the_destination_folder(server, tmp_path):
    """A server listing `../../escape.txt`, `sub/slash.txt` (not recursive), a newline and an
    overlong name: only the plain name is delivered, the others are refused by name, shown
    escaped, and nothing is written or removed outside the destination folder."""
    import sys
    host_key = tmp_path / "hostile_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    port = free_port()
    log = tmp_path / "hostile.log"
    hostile = subprocess.Popen([sys.executable, str(Path(__file__).with_name("hostile_sftp.py")), str(port),
                                str(host_key), str(server.key) + ".pub"], stdout=subprocess.PIPE,
                               stderr=open(log, "w"), text=True)
    try:
        assert hostile.stdout.readline().strip() == "listening"
        landing = tmp_path / "partners" / "acme"
        landing.mkdir(parents=True)
        (tmp_path / "partners" / "other").mkdir()
        (tmp_path / "partners" / "other" / "keep.txt").write_text("another partner's file\n")
        configure(server, f"""
[[location]]
name = "hostile"
type = "sftp"
host = "127.0.0.1"
port = {port}
username = "x"
key = "{server.key}"
host_key = "{fingerprint(Path(str(host_key) + '.pub'))}"

{local('landing', landing)}
[[transfer]]
name = "pull"
source = "hostile"
source_folder = "/out"
destination = "landing"
existing = "replace"
after = "delete"
min_age = 0
""")
        run_transfer(server, "pull")
        assert names(landing) == ["ok.txt"]
        assert (tmp_path / "partners" / "other" / "keep.txt").read_text() == "another partner's file\n"
        assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "partners" / "escape.txt").exists()
        refused = [e for e in server.events() if e["name"] == "transfer.file.skipped" and "refused" in e["message"]]
        assert len(refused) == 5, [e["message"] for e in refused]
        assert all("\n" not in e["message"] for e in refused)
        finished = server.wait_event("transfer.run.finished")
        assert finished["attrs"]["refused"] == "5"
        # Only the delivered file's source was removed at the peer.
        removed = [line for line in log.read_text().splitlines() if line.startswith("REMOVE")]
        assert removed == ["REMOVE '/out/ok.txt'"], removed
    finally:
        hostile.terminate()
        hostile.wait(timeout=10)


def test_a_source_replaced_during_its_copy_is_never_removed_undelivered(server, tmp_path):
    out, inbox = tmp_path / "out", tmp_path / "in"
    out.mkdir()
    inbox.mkdir()
    first = random_file(out / "a.bin", 1_500_000)
    os.utime(first, (time.time() - 600, time.time() - 600))
    local_pair(server, out, inbox, f"""name = "t"
existing = "replace"
after = "delete"
rate = 500000
retry_wait = 1
min_age = 0
""")
    run = subprocess.Popen([str(BIN), "--config", str(server.root / "wharf.toml"), "transfer", "run", "t"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    # A new upload under the same name while the first is being copied.
    second = random_file(tmp_path / "second.bin", 40_000)
    os.utime(second, (time.time() - 300, time.time() - 300))
    os.rename(second, out / "a.bin")
    second_sum = sha256(out / "a.bin")
    run.wait(timeout=60)
    # The second version is never removed before it is delivered: run until it is.
    for _ in range(5):
        if (inbox / "a.bin").exists() and sha256(inbox / "a.bin") == second_sum:
            break
        assert (out / "a.bin").exists(), "the new version was removed undelivered"
        server.wharf("transfer", "run", "t")
    assert sha256(inbox / "a.bin") == second_sum
    assert names(out) == []
    copied = [e for e in server.events() if e["name"] == "transfer.file.copied"]
    assert [e["sha256"] for e in copied] == [second_sum]


def test_max_files_takes_new_files_in_turn_and_starves_none(server, tmp_path):
    out, inbox = tmp_path / "out", tmp_path / "in"
    sums = make_files(out, 10, 100)
    inbox.mkdir()
    local_pair(server, out, inbox, f"""name = "t"
max_files = 3
min_age = 0
""")
    for _ in range(4):
        run_transfer(server, "t")
    assert {p: sha256(inbox / p) for p in names(inbox)} == sums


def test_a_copy_cut_off_in_a_local_destination_is_swept_at_start(server, tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    left = inbox / ".wharf-part-0123456789abcdef"
    left.write_bytes(b"half a copy")
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    configure(server, f"""
{local('in', inbox)}""")
    server.start()
    swept = server.wait_event("upload.leftover_swept", timeout=20)
    assert swept["attrs"]["root"] == str(inbox) and not left.exists()
    server.stop()


@pytest.mark.parametrize("mode", ["deep", "stall"])
def test_a_hostile_webdav_server_neither_crashes_nor_holds_a_run(server, tmp_path, mode):
    """Thousands of nested XML levels in a listing (the parser would overflow its stack),
    or a download that never sends its body: the run fails cleanly, within idle_timeout."""
    import sys
    make_ca_and_leaf(tmp_path, sans="IP:127.0.0.1")
    port = free_port()
    hostile = subprocess.Popen([sys.executable, str(Path(__file__).with_name("hostile_dav.py")), str(port),
                                str(tmp_path / "leaf.pem"), str(tmp_path / "leaf.key"), mode],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert hostile.stdout.readline().strip() == "listening"
        inbox = tmp_path / "in"
        inbox.mkdir()
        (tmp_path / "token").write_text("a-token\n")
        configure(server, f"""
{local('in', inbox)}
[[location]]
name = "hostile"
type = "https"
url = "https://127.0.0.1:{port}/dav/"
token = "file:{tmp_path}/token"
certificate_sha256 = "{certificate_sha256(tmp_path / 'leaf.pem')}"
idle_timeout = 3

[[transfer]]
name = "pull"
source = "hostile"
source_folder = "/out"
destination = "in"
min_age = 0
""")
        started = time.time()
        result = server.wharf("transfer", "run", "pull")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "overflow" not in result.stderr and time.time() - started < 30
        if mode == "deep":
            failed = server.wait_event("transfer.location.failed")
            assert "nested more than" in failed["message"]
        else:
            failed = server.wait_event("transfer.file.failed")
            assert "idle_timeout" in failed["message"] and "retry_in" in failed["attrs"]
        assert names(inbox) == []
    finally:
        hostile.terminate()
        hostile.wait(timeout=10)
