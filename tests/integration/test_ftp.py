"""Plain FTP (a `tls = "off"` service) through the same core: Python ftplib and curl."""

import ftplib
import io
import socket
import subprocess

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
    for name, path in [("download.finished", "/in/up.bin"), ("entry.renamed", "/in/up.bin"),
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


def test_escapes_rules_and_login_failures(server):
    server.add_ftp_service()
    server.wharf("group", "add", "readers", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=list,read", check=True)
    home = server.add_account("reader", password=PASSWORD, groups=["readers"])
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "report.txt").write_text("q3\n")
    c = server.ftp("reader", PASSWORD)
    c.cwd("../../..")
    assert c.pwd() == "/"
    with pytest.raises(ftplib.error_perm):
        c.retrbinary("RETR ../../../wharf.toml", lambda b: None)
    with pytest.raises(ftplib.error_perm, match="550"):
        c.storbinary("STOR new.txt", io.BytesIO(b"x"))
    with pytest.raises(ftplib.error_perm, match="550"):
        c.delete("report.txt")
    c.quit()
    assert sorted(p.name for p in home.iterdir()) == ["report.txt"]
    denied = server.wait_event("permission.denied", protocol="ftp", account="reader")
    assert denied["attrs"]["verb"] in ("write", "delete")
    with pytest.raises(ftplib.error_perm, match="530"):
        server.ftp("reader", "wrong-password")
    failed = server.wait_event("login.failed", protocol="ftp", account="reader")
    assert failed["message"] == "wrong password"
    assert "wrong-password" not in (server.root / "wharf-data" / "audit.jsonl").read_text()


def test_check_config_tls_policies(server):
    server.add_ftp_service(tls="sometimes")
    config = server.root / "wharf.toml"
    r = server.wharf("check-config")
    assert r.returncode == 1 and "service[3].tls" in r.stderr and "not a policy" in r.stderr
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
