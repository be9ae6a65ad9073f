"""Plain FTP (a `tls = "off"` service) through the same core: Python ftplib and curl."""

import ftplib
import io
import socket
import struct
import subprocess
import time
import os

import pytest

from conftest import random_file, sha256

PASSWORD = "ftp-pass-123"


@pytest.fixture
def ftp_server(server):
    server.add_ftp_service()
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    server.home = home
    return server


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_ftplib_round_trip(ftp_server, host, passive):
    s = ftp_server
    src = random_file(s.root / "up.bin", 2_500_000)
    c = s.ftp("alice", PASSWORD, host=host)
    c.set_pasv(passive)
    c.mkd("in")
    with open(src, "rb") as f:
        reply = c.storbinary("STOR in/up.bin", f)
    assert sha256(src) in reply
    got = io.BytesIO()
    c.retrbinary("RETR in/up.bin", got.write)
    assert sha256(s.home / "in" / "up.bin") == sha256(src)
    import hashlib
    assert hashlib.sha256(got.getvalue()).hexdigest() == sha256(src)
    assert c.size("in/up.bin") == 2_500_000
    lines = []
    c.retrlines("LIST in", lines.append)
    assert lines[0].startswith("-rw") and lines[0].endswith(" up.bin")
    facts = dict(c.mlsd("in"))
    assert facts["up.bin"]["size"] == "2500000" and facts["up.bin"]["type"] == "file"
    c.rename("in/up.bin", "in/moved.bin")
    c.delete("in/moved.bin")
    c.rmd("in")
    c.quit()
    up = s.wait_event("upload.finished", path="/in/up.bin", protocol="ftp")
    assert up["sha256"] == sha256(src) and up["bytes"] == 2_500_000
    assert up["remote"].rsplit(":", 1)[0].strip("[]") == host
    # Image-type downloads over plain TCP go through sendfile(2); the event still counts
    # every byte.
    assert s.wait_event("download.finished", path="/in/up.bin")["bytes"] == 2_500_000
    for name, path in [("entry.renamed", "/in/up.bin"),
                       ("file.deleted", "/in/moved.bin"), ("folder.removed", "/in")]:
        s.wait_event(name, path=path, protocol="ftp")


def test_rest_resume_and_hash(ftp_server):
    s = ftp_server
    src = random_file(s.root / "whole.bin", 1_000_000)
    data = src.read_bytes()
    (s.home / "whole.bin").write_bytes(data[:400_000])
    c = s.ftp("alice", PASSWORD)
    with open(src, "rb") as f:
        f.seek(400_000)
        c.storbinary("STOR whole.bin", f, rest=400_000)
    assert sha256(s.home / "whole.bin") == sha256(src)
    # REST + STOR anywhere but the end is refused.
    with pytest.raises(ftplib.error_perm, match="554"):
        c.storbinary("STOR whole.bin", io.BytesIO(b"x"), rest=10)
    got = io.BytesIO()
    c.retrbinary("RETR whole.bin", got.write, rest=999_000)
    assert got.getvalue() == data[999_000:]
    got = io.BytesIO()
    c.retrbinary("RETR whole.bin", got.write, rest=1_000_000)
    assert got.getvalue() == b""
    assert sha256(src) in c.sendcmd("HASH whole.bin")
    c.quit()


def test_curl_passive_epsv_and_active(ftp_server):
    s = ftp_server
    src = random_file(s.root / "c.bin", 1_500_000)
    url = f"ftp://127.0.0.1:{s.ftp_port}/c.bin"
    r = subprocess.run(["curl", "-sS", "-u", f"alice:{PASSWORD}", "-T", str(src), url], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["curl", "-sS", "-P", "-", "-u", f"alice:{PASSWORD}", "-o", str(s.root / "back.bin"), url],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sha256(s.root / "back.bin") == sha256(src)
    r = subprocess.run(["curl", "-sS", "-g", "-u", f"alice:{PASSWORD}", "-o", str(s.root / "v6.bin"),
                        f"ftp://[::1]:{s.ftp_port}/c.bin"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sha256(s.root / "v6.bin") == sha256(src)


def raw(server, *lines, login=True):
    sock = socket.create_connection(("127.0.0.1", server.ftp_port), timeout=10)
    f = sock.makefile("rb")
    replies = [f.readline()]
    if login:
        for cmd in [b"USER alice", f"PASS {PASSWORD}".encode()]:
            sock.sendall(cmd + b"\r\n")
            replies.append(f.readline())
    for line in lines:
        sock.sendall(line + b"\r\n")
        replies.append(f.readline())
    sock.close()
    return [r.decode(errors="replace") for r in replies]


def test_bounce_and_privileged_ports_refused(ftp_server):
    replies = raw(ftp_server, b"PORT 127,0,0,2,195,80", b"EPRT |1|127.0.0.2|50000|", b"PORT 127,0,0,1,0,25")
    assert [r[:3] for r in replies[3:]] == ["501", "501", "501"]
    ftp_server.wait_event("command.refused", protocol="ftp")


def test_commands_before_login_and_bad_input(ftp_server):
    replies = raw(ftp_server, b"RETR x", b"CWD /", b"SITE EXEC /bin/sh", b"LIST", login=False)
    assert all(r.startswith("530") for r in replies[1:])
    refused = ftp_server.wait_event("command.refused", message="command before login")
    assert refused.get("account") is None
    replies = raw(ftp_server, b"FROB", b"REST -1", b"TYPE E", b"\xff\xfe", b"NOOP")
    assert [r[:3] for r in replies[3:]] == ["500", "501", "504", "500", "200"]
    sock = socket.create_connection(("127.0.0.1", ftp_server.ftp_port), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"A" * 10_000)
    assert f.readline().startswith(b"500")
    assert f.readline() == b""
    ftp_server.wait_event("protocol.error", protocol="ftp")
    # Pipelined commands are answered in order.
    sock = socket.create_connection(("127.0.0.1", ftp_server.ftp_port), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(f"USER alice\r\nPASS {PASSWORD}\r\nPWD\r\nNOOP\r\n".encode())
    assert [f.readline()[:3] for _ in range(4)] == [b"331", b"230", b"257", b"200"]


@pytest.mark.parametrize("mode", ["ftp", "ftps", "implicit"])
def test_escapes_rules_and_login_failures(server, mode):
    """The same rules, jail and events on plain FTP, explicit FTPS and implicit FTPS."""
    server.add_ftp_service()
    protocol = "ftp" if mode == "ftp" else "ftps"
    server.wharf("group", "add", "readers", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=list,read", check=True)
    home = server.add_account("reader", password=PASSWORD, groups=["readers"])
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "report.txt").write_text("q3\n")
    (home / "out").symlink_to("/etc")
    c = server.ftp_client(mode, "reader", PASSWORD)
    c.cwd("../../..")
    assert c.pwd() == "/"
    with pytest.raises(ftplib.error_perm):
        c.retrbinary("RETR ../../../wharf.toml", lambda b: None)
    with pytest.raises(ftplib.error_perm):
        c.retrbinary("RETR out/passwd", lambda b: None)
    with pytest.raises(ftplib.error_perm, match="550"):
        c.storbinary("STOR new.txt", io.BytesIO(b"x"))
    with pytest.raises(ftplib.error_perm, match="550"):
        c.delete("report.txt")
    got = io.BytesIO()
    c.retrbinary("RETR report.txt", got.write)
    assert got.getvalue() == b"q3\n"
    c.quit()
    assert sorted(p.name for p in home.iterdir()) == ["out", "report.txt"]
    server.wait_event("download.finished", protocol=protocol, account="reader", path="/report.txt")
    verbs = {e["attrs"].get("verb") for e in server.events()
             if e["name"] == "permission.denied" and e["protocol"] == protocol}
    assert {"write", "delete"} <= verbs
    with pytest.raises(ftplib.error_perm, match="530"):
        server.ftp_client(mode, "reader", "guessed-Secret-7")
    failed = server.wait_event("login.failed", protocol=protocol, account="reader")
    assert failed["message"] == "wrong password"
    assert "guessed-Secret-7" not in (server.root / "wharf-data" / "audit.jsonl").read_text()


def test_check_config_tls_policies(server):
    server.add_ftp_service(tls="sometimes")
    config = server.root / "wharf.toml"
    r = server.wharf("check-config")
    assert r.returncode == 1 and "].tls: " in r.stderr and "not a policy" in r.stderr
    text = config.read_text().replace('tls = "sometimes"', 'tls = "optional"')
    text = text.replace('type = "ftps-implicit"', 'type = "ftps-implicit"\ntls = "off"')
    config.write_text(text)
    r = server.wharf("check-config")
    assert r.returncode == 1 and "service[2].tls" in r.stderr and "always TLS" in r.stderr
    text = text.replace('type = "ftps-implicit"\ntls = "off"', 'type = "ftps-implicit"')
    start = text.index("[tls]")
    text = text[:start] + text[text.index("[[service]]", start):]
    config.write_text(text)
    r = server.wharf("check-config")
    assert r.returncode == 1 and "service[1].tls" in r.stderr and "needs a certificate" in r.stderr


def test_refused_stor_does_not_reveal_existence(server):
    server.add_ftp_service()
    server.wharf("group", "add", "listers", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=read,list", check=True)
    home = server.add_account("lee", password=PASSWORD, groups=["listers"])
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "exists.txt").write_text("x")
    c = server.ftp("lee", PASSWORD)
    replies = []
    for name in ["exists.txt", "missing.txt"]:
        with pytest.raises(ftplib.error_perm) as err:
            c.storbinary(f"STOR {name}", io.BytesIO(b"y"))
        replies.append(str(err.value).replace(name, "NAME"))
    c.quit()
    assert replies[0] == replies[1]
    assert (home / "exists.txt").read_text() == "x"


def test_abor_with_urgent_telnet_synch(ftp_server):
    """ftplib's abort() sends ABOR as TCP urgent data with the Telnet IP/Synch prefix."""
    s = ftp_server
    random_file(s.home / "big.bin", 64_000_000)
    c = s.ftp("alice", PASSWORD)
    conn = c.transfercmd("RETR big.bin")
    assert len(conn.recv(65536)) > 0
    assert c.abort().startswith("426")
    assert c.getresp().startswith("226")
    conn.close()
    # An upload stopped by ABOR leaves nothing under its name.
    conn = c.transfercmd("STOR cut.bin")
    conn.sendall(os.urandom(500_000))
    assert c.abort().startswith("426")
    assert c.getresp().startswith("226")
    conn.close()
    assert c.sendcmd("NOOP").startswith("200")
    c.quit()
    assert not (s.home / "cut.bin").exists()
    assert "ABOR" in s.wait_event("download.failed", path="/big.bin")["message"]
    assert "ABOR" in s.wait_event("upload.failed", path="/cut.bin")["message"]


def test_resume_after_a_cut_connection(server):
    server.add_ftp_service()
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=all", "--upload-mode", "resumable", check=True)
    home = server.add_account("pat", password=PASSWORD, groups=["partners"])
    server.start()
    src = random_file(server.root / "whole.bin", 4_000_000)
    data = src.read_bytes()
    # The network fails mid-upload: the data connection is reset. (A clean close would be
    # the end of the file: FTP's stream mode has no other end-of-file marker.)
    c = server.ftp("pat", PASSWORD)
    conn = c.transfercmd("STOR whole.bin")
    conn.sendall(data[:1_500_000])
    time.sleep(1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    c.sock.close()
    server.wait_event("upload.failed", path="/whole.bin", account="pat")
    kept = (home / "whole.bin").stat().st_size
    assert 0 < kept <= 1_500_000
    c = server.ftp("pat", PASSWORD)
    assert c.size("whole.bin") == kept
    with open(src, "rb") as f:
        f.seek(kept)
        c.storbinary("STOR whole.bin", f, rest=kept)
    assert sha256(home / "whole.bin") == sha256(src)
    got = io.BytesIO()
    c.retrbinary("RETR whole.bin", got.write, rest=2_000_000)
    assert got.getvalue() == data[2_000_000:]
    c.quit()


def test_stolen_passive_connection_refused(ftp_server):
    """A connection to the passive port from another address than the client's is refused."""
    s = ftp_server
    (s.home / "secret.txt").write_text("payroll\n")
    c = s.ftp("alice", PASSWORD)
    host, port = ftplib.parse227(c.sendcmd("PASV"))
    thief = socket.socket()
    thief.bind(("127.0.0.2", 0))
    thief.connect((host, port))
    c.putcmd("RETR secret.txt")
    assert c.getresp().startswith("150")
    with pytest.raises(ftplib.error_temp, match="425"):
        c.getresp()
    thief.settimeout(5)
    assert thief.recv(100) == b""
    c.quit()
    stolen = s.wait_event("protocol.error", account="alice")
    assert "127.0.0.2" in stolen["message"]


def test_limits(server):
    server.add_ftp_service(extra="max_per_ip = 2\nidle_timeout = 2\ndata_timeout = 2")
    server.add_account("alice", password=PASSWORD)
    server.start()
    (server.homes / "alice").mkdir(parents=True, exist_ok=True)
    first = server.ftp("alice", PASSWORD)
    second = socket.create_connection(("127.0.0.1", server.ftp_port), timeout=10)
    assert second.recv(100).startswith(b"220")
    third = socket.create_connection(("127.0.0.1", server.ftp_port), timeout=10)
    assert third.makefile("rb").readline().startswith(b"421")
    refused = server.wait_event("connection.refused")
    assert "from this address" in refused["message"]
    # A data connection that never comes: 425 after data_timeout, and an event.
    first.sendcmd("PASV")
    first.putcmd("LIST")
    assert first.getresp().startswith("150")
    started = time.time()
    with pytest.raises(ftplib.error_temp, match="425"):
        first.getresp()
    assert 1.5 < time.time() - started < 10
    server.wait_event("protocol.error", account="alice")
    # Idle: closed with 421 after idle_timeout.
    time.sleep(3)
    assert first.getline().startswith("421")
    server.wait_event("connection.closed", message="idle timeout")
    second.close()
    third.close()


def test_pasv_flood_and_garbage_stay_bounded(ftp_server):
    s = ftp_server
    pid = s.proc.pid
    c = s.ftp("alice", PASSWORD)
    c.sendcmd("PASV")
    before = len(os.listdir(f"/proc/{pid}/fd"))
    for _ in range(300):
        c.sendcmd("PASV")
        c.sendcmd("EPSV")
    # Each PASV/EPSV replaces the last: the flood holds one listening socket, not 600.
    assert len(os.listdir(f"/proc/{pid}/fd")) <= before + 2
    # Binary garbage: the line limit closes that connection; others carry on.
    junk = socket.create_connection(("127.0.0.1", s.ftp_port), timeout=10)
    junk.recv(100)
    try:
        junk.sendall(bytes(b % 255 + 1 for b in os.urandom(200_000)).replace(b"\n", b"x"))
    except OSError:
        pass
    junk.settimeout(10)
    reply = junk.recv(1000)
    assert reply.startswith(b"500")
    assert c.sendcmd("NOOP").startswith("200")
    assert c.pwd() == "/"
    c.quit()


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_lftp_mirror_plain(ftp_server, host):
    s = ftp_server
    local = s.root / "local"
    random_file(local / "a.bin", 300_000)
    random_file(local / "sub" / "b.bin", 50_000)
    settings = "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 15; "
    r = subprocess.run(["lftp", "-c", settings + f"open -u alice,{PASSWORD} -p {s.ftp_port} {host}; "
                        "mirror -R local remote; mirror remote back"],
                       capture_output=True, text=True, timeout=120, cwd=s.root)
    assert r.returncode == 0, r.stdout + r.stderr
    for rel in ["a.bin", "sub/b.bin"]:
        assert sha256(s.home / "remote" / rel) == sha256(local / rel)
        assert sha256(s.root / "back" / rel) == sha256(local / rel)


def test_ascii_mode_and_appe(ftp_server):
    s = ftp_server
    c = s.ftp("alice", PASSWORD)
    # storlines sends TYPE A and CRLF line ends; the file is stored with LF.
    c.storlines("STOR notes.txt", io.BytesIO(b"one\ntwo\nthree\n"))
    assert (s.home / "notes.txt").read_bytes() == b"one\ntwo\nthree\n"
    raw_lines = []
    c.sendcmd("TYPE A")
    conn = c.transfercmd("RETR notes.txt")
    while chunk := conn.recv(4096):
        raw_lines.append(chunk)
    conn.close()
    c.voidresp()
    assert b"".join(raw_lines) == b"one\r\ntwo\r\nthree\r\n"
    # APPE continues a file; the 226 reply carries the SHA-256 of the whole file.
    c.sendcmd("TYPE I")
    reply = c.storbinary("APPE notes.txt", io.BytesIO(b"four\n"))
    whole = b"one\ntwo\nthree\nfour\n"
    import hashlib
    assert hashlib.sha256(whole).hexdigest() in reply
    assert (s.home / "notes.txt").read_bytes() == whole
    c.quit()


def test_passive_address_foreign_data_and_connection_limits(server):
    server.add_ftp_service(extra='passive_address = "198.51.100.7"\nallow_foreign_data = true\n'
                                 "max_connections = 3\nmax_per_ip = 2")
    server.add_account("alice", password=PASSWORD)
    server.start()
    c = server.ftp("alice", PASSWORD)
    # PASV announces the configured public address (nothing connects to it here).
    assert ftplib.parse227(c.sendcmd("PASV"))[0] == "198.51.100.7"
    # With allow_foreign_data a PORT to another address is accepted (no transfer follows).
    assert c.sendcmd("PORT 127,0,0,2,195,80").startswith("200")
    with pytest.raises(ftplib.error_perm, match="501"):
        c.sendcmd("PORT 127,0,0,2,0,25")
    c2 = server.ftp("alice", PASSWORD)
    c3 = server.ftp("alice", PASSWORD, host="::1")
    # The fourth control connection exceeds max_connections, whatever its address.
    fourth = socket.create_connection(("::1", server.ftp_port), timeout=10)
    assert fourth.makefile("rb").readline().startswith(b"421")
    refused = server.wait_event("connection.refused", message="too many connections")
    assert refused["remote"].startswith("[::1]")
    for client in (c, c2, c3):
        client.quit()
