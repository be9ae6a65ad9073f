"""Third-party FTPS clients with TLS session reuse required (the default): lftp (GnuTLS)
mirrors 100 files both ways on one control connection over TLS 1.3 and 1.2; rclone (Go's
TLS, one session cache for all of its connections) with its default parallel transfers
copies, checks, syncs, moves and deletes a tree over TLS 1.3 and 1.2; a data connection may
resume a session of the same login's other control connection, never another account's; and
a refused `PROT C` is recorded."""

import ftplib
import io
import os
import shutil
import ssl
import subprocess
import threading
import time

import pytest

from conftest import ReusingFTP_TLS, sha256, tls_client_context
from tls_certs import make_ca_and_leaf

PASSWORD = "interop-pass-123"
TLS_PRIORITY = {"1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3", "1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2"}


@pytest.fixture
def ftps(server):
    """The default explicit FTPS service, with a certificate signed by the tests' CA."""
    certs = server.root / "certs"
    certs.mkdir()
    make_ca_and_leaf(certs, "IP:127.0.0.1,IP:::1,DNS:localhost")
    tls = server.root / "wharf-data" / "tls"
    shutil.copyfile(certs / "leaf.pem", tls / "certificate.pem")
    shutil.copyfile(certs / "leaf.key", tls / "key.pem")
    os.chmod(tls / "key.pem", 0o600)
    home = server.add_account("alice", password=PASSWORD)
    server.add_account("bob", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    server.home = home
    server.ca = certs / "ca.pem"
    return server


def tree(root):
    return {
        os.path.relpath(os.path.join(d, f), root): sha256(os.path.join(d, f))
        for d, _, files in os.walk(root) for f in files
    }


def named(server, name):
    return [e for e in server.events() if e["name"] == name]


def no_refused_data_connections(server):
    failed = [e["message"] for e in server.events() if e["name"] == "tls.failed"]
    assert failed == []


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_lftp_mirrors_100_files_both_ways_on_one_connection(ftps, version):
    s = ftps
    local = s.root / "local"
    for i in range(100):
        folder = local / f"d{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:03}.txt").write_bytes(os.urandom(100 + i * 37))
    settings = (
        f"set ssl:ca-file {s.ca}; set ssl:verify-certificate yes; "
        f'set ssl:priority "{TLS_PRIORITY[version]}"; '
        "set ftp:ssl-force yes; set ftp:ssl-protect-data yes; set ftp:ssl-copy-sid yes; "
        "set net:connection-limit 1; set net:max-retries 1; set net:timeout 20; "
        "set cmd:fail-exit yes; "
    )
    script = f"open -u alice,{PASSWORD} -p {s.ftps_port} 127.0.0.1; mirror -R local up; mirror up back"
    r = subprocess.run(["lftp", "-c", settings + script], capture_output=True, text=True,
                       timeout=180, cwd=s.root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(s.home / "up") == tree(local)
    assert tree(s.root / "back") == tree(local)
    # One control connection carried all 200 transfers and the listings.
    controls = [e for e in named(s, "tls.established") if e["attrs"]["channel"] == "control"]
    assert len(controls) == 1
    assert controls[0]["attrs"]["version"] == "TLSv" + version.replace(".", "_")
    no_refused_data_connections(s)


def rclone(server, *args, tls12=False, check=True):
    obscured = subprocess.run(["rclone", "obscure", PASSWORD], capture_output=True, text=True,
                              check=True).stdout.strip()
    remote = (f":ftp,host=127.0.0.1,port={server.ftps_port},user=alice,pass={obscured},"
              f"explicit_tls=true{',disable_tls13=true' if tls12 else ''}:")
    args = [a.replace("R:", remote) for a in args]
    # The tests' CA is trusted the ordinary way, not by turning certificate checks off.
    env = dict(os.environ, SSL_CERT_FILE=str(server.ca),
               RCLONE_CONFIG=str(server.root / "rclone.conf"))
    r = subprocess.run(["rclone", *args], capture_output=True, text=True, timeout=180, env=env)
    if check:
        refused = [e["message"] for e in named(server, "tls.failed")]
        assert r.returncode == 0 and "522" not in r.stderr, (refused, r.stderr[-3000:])
    return r


def make_tree(root, count):
    """Names with spaces, unicode and percent signs (`%20` must stay literal)."""
    names = ["plain {}.txt", "ünïcödé €uro {}.txt", "percent%20 {} 100%.txt", "%41 {}%.bin"]
    for i in range(count):
        folder = root / ["a", "b c", "d%25e", "ğ ü"][i % 4]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / names[i % len(names)].format(i)).write_bytes(os.urandom(50 + i % 300))


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_rclone_with_default_parallel_transfers(ftps, version):
    s = ftps
    tls12 = version == "1.2"
    local = s.root / "tree"
    make_tree(local, 240)
    rclone(s, "copy", str(local), "R:tree", tls12=tls12)
    assert tree(s.home / "tree") == tree(local)
    # --download reads every file back over parallel data connections.
    rclone(s, "check", "--download", str(local), "R:tree", tls12=tls12)
    for i, path in enumerate(sorted(local.rglob("*.txt"))[:30]):
        if i % 3 == 0:
            path.unlink()
        else:
            path.write_bytes(os.urandom(400 + i))
    make_tree(local / "added", 20)
    rclone(s, "sync", str(local), "R:tree", tls12=tls12)
    assert tree(s.home / "tree") == tree(local)
    rclone(s, "moveto", "R:tree/added/a/plain 0.txt", "R:moved/ünï 100%.txt", tls12=tls12)
    assert (s.home / "moved" / "ünï 100%.txt").read_bytes() == (local / "added/a/plain 0.txt").read_bytes()
    assert not (s.home / "tree/added/a/plain 0.txt").exists()
    rclone(s, "delete", "R:tree", tls12=tls12)
    assert tree(s.home / "tree") == {}
    listed = rclone(s, "lsf", "-R", "R:", tls12=tls12).stdout.split("\n")
    assert "moved/ünï 100%.txt" in listed
    versions = {e["attrs"]["version"] for e in named(s, "tls.established")}
    assert versions == {"TLSv" + version.replace(".", "_")}
    no_refused_data_connections(s)


class BorrowingFTP_TLS(ReusingFTP_TLS):
    """Opens its data connections with the TLS session of another control connection, as
    Go's TLS does with the one session cache all of its connections share."""

    borrowed = None

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.borrowed)
        return conn, size


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_data_connection_resumes_only_sessions_of_its_own_login(ftps, version):
    s = ftps
    for user in ["alice", "bob"]:
        (s.homes / user).mkdir(parents=True, exist_ok=True)
        (s.homes / user / "f.txt").write_text("payroll\n")
    ctx = tls_client_context()
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    def connect(user):
        c = BorrowingFTP_TLS(context=ctx)
        c.connect("127.0.0.1", s.ftps_port, timeout=15)
        c.login(user, PASSWORD)
        c.prot_p()
        c.voidcmd("NOOP")  # reads the TLS 1.3 tickets that follow the handshake
        return c

    a, other_alice, bob = connect("alice"), connect("alice"), connect("bob")
    # Alice's data connection with the session of her other control connection: accepted.
    a.borrowed = other_alice.sock.session
    for _ in range(3):
        got = io.BytesIO()
        a.retrbinary("RETR f.txt", got.write)
        assert got.getvalue() == b"payroll\n"
    # With a session of Bob's control connection: refused before any byte is sent.
    a.borrowed = bob.sock.session
    with pytest.raises(ftplib.error_perm, match="522"):
        a.retrbinary("RETR f.txt", lambda b: None)
    failed = s.wait_event("tls.failed", account="alice")
    assert "of another login (session reuse is required)" in failed["message"]
    # And Bob cannot use Alice's.
    bob.borrowed = other_alice.sock.session
    with pytest.raises(ftplib.error_perm, match="522"):
        bob.retrbinary("RETR f.txt", lambda b: None)
    # A session of a control connection still logging in (Go's TLS offers the ticket it
    # received last): the data connection waits for that login.
    pending = ftplib.FTP_TLS(context=ctx)
    pending.connect("127.0.0.1", s.ftps_port, timeout=15)
    pending.auth()
    pending.voidcmd("NOOP")
    a.borrowed = pending.sock.session
    got = io.BytesIO()
    retr = threading.Thread(target=a.retrbinary, args=("RETR f.txt", got.write))
    retr.start()
    time.sleep(0.5)
    assert got.getvalue() == b""
    pending.login("alice", PASSWORD)
    retr.join(15)
    assert got.getvalue() == b"payroll\n"
    for c in (a, other_alice, bob, pending):
        c.quit()


def test_refused_prot_c_is_recorded(ftps):
    s = ftps
    c = ftplib.FTP_TLS(context=tls_client_context())
    c.connect("127.0.0.1", s.ftps_port, timeout=15)
    c.login("alice", PASSWORD)
    c.sendcmd("PBSZ 0")
    with pytest.raises(ftplib.error_perm, match="534"):
        c.sendcmd("PROT C")
    c.quit()
    refused = s.wait_event("tls.failed", account="alice", protocol="ftps")
    assert "PROT C" in refused["message"]
