"""Explicit and implicit FTPS: ftplib, curl and lftp over TLS on IPv4 and IPv6, the TLS
policy (no login or data in the clear), data connections bound to the control connection's
TLS session, and TLS handshakes that fail or stall."""

import ftplib
import hashlib
import io
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import random_file, sha256, tls_client_context

PASSWORD = "ftps-pass-123"


@pytest.fixture
def ftps_server(server):
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    server.home = home
    return server


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("mode", ["ftps", "implicit"])
def test_ftplib_tls_round_trip(ftps_server, mode, host):
    s = ftps_server
    src = random_file(s.root / "up.bin", 3_000_000)
    c = s.ftp_client(mode, "alice", PASSWORD, host=host)
    c.mkd("in")
    with open(src, "rb") as f:
        reply = c.storbinary("STOR in/up.bin", f)
    assert sha256(src) in reply
    got = io.BytesIO()
    c.retrbinary("RETR in/up.bin", got.write)
    assert hashlib.sha256(got.getvalue()).hexdigest() == sha256(src)
    assert sha256(s.home / "in" / "up.bin") == sha256(src)
    assert sha256(src) in c.sendcmd("HASH in/up.bin")
    # Active mode: the server connects back, and is still the TLS server (RFC 4217 §7).
    c.set_pasv(False)
    got = io.BytesIO()
    c.retrbinary("RETR in/up.bin", got.write)
    assert hashlib.sha256(got.getvalue()).hexdigest() == sha256(src)
    c.set_pasv(True)
    facts = dict(c.mlsd("in"))
    assert facts["up.bin"]["size"] == "3000000"
    lines = []
    c.retrlines("LIST in", lines.append)
    assert lines[0].endswith(" up.bin")
    c.quit()
    up = s.wait_event("upload.finished", path="/in/up.bin", protocol="ftps")
    assert up["sha256"] == sha256(src)
    assert up["remote"].rsplit(":", 1)[0].strip("[]") == host
    tls = s.wait_event("tls.established", protocol="ftps")
    assert tls["attrs"]["channel"] == "control" and tls["attrs"]["version"].startswith("TLSv1")
    s.wait_event("download.finished", path="/in/up.bin", protocol="ftps")


def curl(*args):
    return subprocess.run(["curl", "-sS", "-k", "-g", *args], capture_output=True, timeout=60)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_curl_explicit_and_implicit(ftps_server, host):
    s = ftps_server
    src = random_file(s.root / "c.bin", 2_000_000)
    auth = ["-u", f"alice:{PASSWORD}"]
    explicit = f"ftp://{host}:{s.ftps_port}/c.bin"
    r = curl("--ssl-reqd", *auth, "-T", str(src), explicit)
    assert r.returncode == 0, r.stderr
    assert sha256(s.home / "c.bin") == sha256(src)
    r = curl("--ssl-reqd", *auth, "-o", str(s.root / "epsv.bin"), explicit)
    assert r.returncode == 0, r.stderr
    # Active mode over TLS is covered with ftplib: curl 7.87-7.88 (Debian 12) never starts
    # TLS on an active data connection (curl issue 10666).
    r = curl(*auth, "-o", str(s.root / "implicit.bin"), f"ftps://{host}:{s.implicit_port}/c.bin")
    assert r.returncode == 0, r.stderr
    r = curl(*auth, "-T", str(src), f"ftps://{host}:{s.implicit_port}/c2.bin")
    assert r.returncode == 0, r.stderr
    for name in ["epsv.bin", "implicit.bin"]:
        assert sha256(s.root / name) == sha256(src), name
    assert sha256(s.home / "c2.bin") == sha256(src)
    # Without TLS the required-TLS service refuses the login itself.
    r = curl(*auth, "-o", str(s.root / "clear.bin"), explicit)
    assert r.returncode == 67, r.stderr
    refused = s.wait_event("tls.failed", protocol="ftp")
    assert "requires TLS" in refused["message"]


def lftp(script, cwd):
    settings = "set ssl:verify-certificate no; set ftp:ssl-force yes; set ftp:ssl-protect-data yes; " \
               "set net:max-retries 1; set net:timeout 15; "
    return subprocess.run(["lftp", "-c", settings + script], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def tree(root):
    return {
        os.path.relpath(os.path.join(d, f), root): sha256(os.path.join(d, f))
        for d, _, files in os.walk(root) for f in files
    }


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_lftp_mirror_up_and_down(ftps_server, host):
    s = ftps_server
    local = s.root / "local"
    random_file(local / "a.bin", 700_000)
    random_file(local / "sub" / "b.bin", 90_000)
    (local / "sub" / "deep").mkdir()
    (local / "sub" / "deep" / "ünïcode name.txt").write_text("utf-8 names\n")
    r = lftp(f"open -u alice,{PASSWORD} -p {s.ftps_port} {host}; mirror -R local remote; "
             f"mirror remote back", s.root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(s.home / "remote") == tree(local)
    assert tree(s.root / "back") == tree(local)
    r = lftp(f"open -u alice,{PASSWORD} ftps://{host}:{s.implicit_port}; mirror remote implicit", s.root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(s.root / "implicit") == tree(local)
    s.wait_event("upload.finished", path="/remote/sub/deep/ünïcode name.txt", protocol="ftps")


def tls_control(server, port=None):
    """A raw explicit-FTPS control connection, logged in, PBSZ 0 and PROT P given."""
    ctx = tls_client_context()
    sock = socket.create_connection(("127.0.0.1", port or server.ftps_port), timeout=10)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220")
    sock.sendall(b"AUTH TLS\r\n")
    assert f.readline().startswith(b"234")
    tls = ctx.wrap_socket(sock, server_hostname="localhost")
    f = tls.makefile("rb")

    def cmd(line):
        tls.sendall(line + b"\r\n")
        return f.readline().decode()

    for line in [b"USER alice", f"PASS {PASSWORD}".encode(), b"PBSZ 0", b"PROT P"]:
        assert cmd(line)[:1] in "23", line
    return tls, f, cmd


def test_tls_policy_refusals(ftps_server):
    s = ftps_server
    sock = socket.create_connection(("127.0.0.1", s.ftps_port), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    for line, code in [(b"USER alice", b"530"), (f"PASS {PASSWORD}".encode(), b"530"),
                       (b"PBSZ 0", b"503"), (b"PROT P", b"503"), (b"AUTH KERBEROS", b"504")]:
        sock.sendall(line + b"\r\n")
        assert f.readline().startswith(code), line
    sock.close()
    # Logged in over TLS but PROT C: no data connection in the clear, no PROT C at all.
    c = ftplib.FTP_TLS(context=tls_client_context())
    c.connect("127.0.0.1", s.ftps_port, timeout=10)
    c.login("alice", PASSWORD)
    with pytest.raises(ftplib.error_perm, match="521"):
        c.nlst()
    c.sendcmd("PBSZ 0")
    with pytest.raises(ftplib.error_perm, match="534"):
        c.sendcmd("PROT C")
    with pytest.raises(ftplib.error_perm, match="534"):
        c.sendcmd("CCC")
    c.quit()
    s.wait_event("tls.failed", protocol="ftps", account="alice")
    # FEAT advertises TLS.
    c = s.ftp_client("ftps", "alice", PASSWORD)
    assert "AUTH TLS" in c.sendcmd("FEAT") + "".join(c.sendcmd("FEAT").splitlines())
    c.quit()


def test_data_connection_must_resume_the_control_session(ftps_server):
    s = ftps_server
    (s.home / "secret.txt").write_text("payroll\n" * 1000)
    # ftplib's own FTP_TLS opens each data connection with a fresh TLS session.
    c = ftplib.FTP_TLS(context=tls_client_context())
    c.connect("127.0.0.1", s.ftps_port, timeout=10)
    c.login("alice", PASSWORD)
    c.prot_p()
    with pytest.raises(ftplib.error_perm, match="522"):
        c.retrbinary("RETR secret.txt", lambda b: None)
    c.quit()
    failed = s.wait_event("tls.failed", protocol="ftps", account="alice")
    assert "session reuse is required" in failed["message"]
    s.wait_event("download.failed", path="/secret.txt")
    # A thief who reaches the passive port first gets nothing: its handshake does not
    # resume the victim's session, so the transfer is refused before any byte is sent.
    tls, f, cmd = tls_control(s)
    reply = cmd(b"EPSV")
    port = int(reply.split("|||")[1].split("|")[0])
    thief = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls.sendall(b"RETR secret.txt\r\n")
    assert f.readline().startswith(b"150")
    stolen = b""
    try:
        t = tls_client_context().wrap_socket(thief, server_hostname="localhost")
        while chunk := t.recv(65536):
            stolen += chunk
    except (ssl.SSLError, OSError):
        pass
    assert stolen == b""
    assert f.readline().startswith(b"522")
    tls.close()


def test_optional_tls_and_reuse_switched_off(server):
    port = server.add_ftp_service(tls="optional", name="ftp-optional",
                                  extra="require_tls_session_reuse = false")
    home = server.add_account("bob", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "f.txt").write_text("hello\n")
    plain = ftplib.FTP()
    plain.connect("127.0.0.1", port, timeout=10)
    plain.login("bob", PASSWORD)
    assert plain.nlst() == ["f.txt"]
    plain.quit()
    # Stock FTP_TLS (no session reuse) works when the service does not require reuse.
    c = ftplib.FTP_TLS(context=tls_client_context())
    c.connect("127.0.0.1", port, timeout=10)
    c.login("bob", PASSWORD)
    c.prot_p()
    got = io.BytesIO()
    c.retrbinary("RETR f.txt", got.write)
    assert got.getvalue() == b"hello\n"
    c.quit()
    server.wait_event("download.finished", protocol="ftps", account="bob")
    server.wait_event("folder.listed", protocol="ftp", account="bob")


def test_plaintext_after_auth_tls_is_discarded(ftps_server):
    """Commands pipelined behind AUTH TLS in the clear never run (STARTTLS injection)."""
    s = ftps_server
    sock = socket.create_connection(("127.0.0.1", s.ftps_port), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(f"AUTH TLS\r\nUSER alice\r\nPASS {PASSWORD}\r\n".encode())
    assert f.readline().startswith(b"234")
    tls = tls_client_context().wrap_socket(sock, server_hostname="localhost")
    tf = tls.makefile("rb")
    tls.sendall(b"PWD\r\n")
    assert tf.readline().startswith(b"530")
    tls.sendall(b"PASS x\r\n")
    assert tf.readline().startswith(b"503")
    tls.close()


def test_stalled_and_broken_handshakes(server):
    s = server
    s.home = s.add_account("alice", password=PASSWORD)
    s.short_login_grace(5)
    s.start()
    s.home.mkdir(parents=True, exist_ok=True)
    # Garbage where a ClientHello should be.
    sock = socket.create_connection(("127.0.0.1", s.implicit_port), timeout=10)
    sock.sendall(os.urandom(4096))
    sock.settimeout(10)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass
    sock.close()
    s.wait_event("tls.failed", protocol="ftps")
    # A client that never starts its handshake is dropped at the login grace time (5 s).
    stalled = socket.create_connection(("::1", s.implicit_port), timeout=10)
    started = time.time()
    # Meanwhile other sessions work.
    c = s.ftp_client("implicit", "alice", PASSWORD)
    assert c.pwd() == "/"
    c.quit()
    stalled.settimeout(15)
    assert stalled.recv(100) == b""
    assert 3 < time.time() - started < 12
    events = [e for e in s.events() if e["name"] == "tls.failed"]
    assert any("did not finish in time" in e["message"] for e in events)
    assert any("handshake on the control connection failed" in e["message"] for e in events)


def test_abor_over_tls(ftps_server):
    s = ftps_server
    random_file(s.home / "big.bin", 64_000_000)
    tls, f, cmd = tls_control(s)
    reply = cmd(b"EPSV")
    port = int(reply.split("|||")[1].split("|")[0])
    data = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls.sendall(b"RETR big.bin\r\n")
    assert f.readline().startswith(b"150")
    d = tls.context.wrap_socket(data, server_hostname="localhost", session=tls.session)
    assert len(d.recv(65536)) > 0
    tls.sendall(b"ABOR\r\n")
    assert f.readline().startswith(b"426")
    assert f.readline().startswith(b"226")
    d.close()
    assert cmd(b"NOOP").startswith("200")
    tls.close()
    failed = s.wait_event("download.failed", path="/big.bin", protocol="ftps")
    assert "ABOR" in failed["message"]


def test_stalled_data_handshake_and_abor_while_waiting(server):
    port = server.add_ftp_service(tls="required", name="ftps-short", extra="data_timeout = 2")
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "f.txt").write_text("x\n")
    tls, f, cmd = tls_control(server, port=port)
    # The data connection comes, but its TLS handshake never starts: 425 after data_timeout.
    reply = cmd(b"EPSV")
    data_port = int(reply.split("|||")[1].split("|")[0])
    silent = socket.create_connection(("127.0.0.1", data_port), timeout=10)
    tls.sendall(b"RETR f.txt\r\n")
    assert f.readline().startswith(b"150")
    started = time.time()
    assert f.readline().startswith(b"425")
    assert 1.5 < time.time() - started < 10
    silent.close()
    stalled = server.wait_event("tls.failed", account="alice")
    assert "did not finish in time" in stalled["message"]
    # ABOR while the server waits for the data connection cancels the wait at once.
    cmd(b"EPSV")
    tls.sendall(b"RETR f.txt\r\n")
    assert f.readline().startswith(b"150")
    tls.sendall(b"ABOR\r\n")
    assert f.readline().startswith(b"426")
    assert f.readline().startswith(b"226")
    assert cmd(b"NOOP").startswith("200")
    tls.close()
