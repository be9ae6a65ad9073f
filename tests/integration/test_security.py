"""Escapes, permission rules, refused requests and hostile input."""

import os
import socket
import struct
import time

import pytest

from conftest import random_file, sha256


def test_escapes_are_refused_over_sftp_and_scp(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    secret = server.root / "secret.txt"
    secret.write_text("top secret\n")
    outside = server.root / "outside"
    outside.mkdir()
    os.symlink(secret, home / "abs-link")
    os.symlink("../../../secret.txt", home / "rel-link")
    os.symlink(str(outside), home / "dir-link")

    out = server.sftp("alice", "cd ../../..\npwd\n")
    assert "Remote working directory: /" in out.stdout
    for path in ["../../../secret.txt", "/../../secret.txt", "abs-link", "rel-link"]:
        r = server.sftp("alice", f"get {path} got.txt\n", check=False)
        assert r.returncode != 0, path
        assert not (server.root / "got.txt").exists(), path
    (outside / "private-name.txt").write_text("x")
    r = server.sftp("alice", "ls dir-link/\nls -l dir-link/private-name.txt\n", check=False)
    assert "private-name" not in r.stdout.replace("ls -l dir-link/private-name.txt", "")
    (outside / "private-name.txt").unlink()
    r = server.sftp("alice", f"put {secret} dir-link/planted.txt\n", check=False)
    assert r.returncode != 0
    assert list(outside.iterdir()) == []
    r = server.scp("alice@127.0.0.1:/abs-link", str(server.root / "scp-got.txt"), legacy=True, check=False)
    assert r.returncode != 0
    assert not (server.root / "scp-got.txt").exists()
    r = server.scp(str(secret), "alice@127.0.0.1:/dir-link/x.txt", legacy=True, check=False)
    assert r.returncode != 0
    assert list(outside.iterdir()) == []
    # A symlink created by the client points inside the home whatever it was given.
    server.sftp("alice", "put /etc/hostname inside.txt\nsymlink /inside.txt made-link\n")
    assert os.readlink(home / "made-link") == str((home / "inside.txt").resolve())
    server.wait_event("permission.denied")


def test_read_only_group(server):
    server.wharf("group", "add", "readers", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=list,read", check=True)
    home = server.add_account("reader", groups=["readers"])
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "report.txt").write_text("quarterly\n")
    src = random_file(server.root / "up.bin", 1000)
    server.sftp("reader", "get report.txt got.txt\nls\n")
    assert (server.root / "got.txt").read_text() == "quarterly\n"
    for command in [f"put {src} up.bin", "rm report.txt", "mkdir new", "rename report.txt r2.txt", "chmod 600 report.txt"]:
        r = server.sftp("reader", command + "\n", check=False)
        assert r.returncode != 0, command
        assert "ermission denied" in r.stderr, (command, r.stderr)
    assert sorted(os.listdir(home)) == ["report.txt"]
    r = server.scp(str(src), "reader@127.0.0.1:/up.bin", legacy=True, check=False)
    assert r.returncode != 0
    denied = [e for e in server.events() if e["name"] == "permission.denied"]
    verbs = {e["attrs"]["verb"] for e in denied}
    assert {"write", "delete", "mkdir", "rename", "setattr"} <= verbs
    assert all(e["account"] == "reader" and e["outcome"] == "failure" for e in denied)


def test_regex_deny_rule(server):
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--deny", r"re:\.(exe|js)$=write,overwrite,rename",
                 "--allow", "/**=all", check=True)
    home = server.add_account("partner", groups=["partners"])
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    exe = random_file(server.root / "tool.exe", 1000)
    txt = random_file(server.root / "notes.txt", 1000)
    r = server.sftp("partner", f"put {exe} tool.exe\n", check=False)
    assert r.returncode != 0 and "ermission denied" in r.stderr
    server.sftp("partner", f"put {txt} notes.txt\n")
    r = server.sftp("partner", "rename notes.txt notes.js\n", check=False)
    assert r.returncode != 0
    r = server.scp(str(exe), "partner@127.0.0.1:/tool.exe", legacy=True, check=False)
    assert r.returncode != 0
    assert sorted(os.listdir(home)) == ["notes.txt"]
    # Reading an .exe is not decided by the deny rule.
    (home / "vendor.exe").write_bytes(b"MZ")
    server.sftp("partner", "get vendor.exe v.exe\n")
    server.wait_event("permission.denied", path="/tool.exe")


def test_exec_shell_and_forwarding_are_refused(server):
    server.add_account("alice")
    server.start()
    for command in ["ls -la", "sh -c 'cat /etc/passwd'", "scp -S /bin/sh -t /", "rsync --server . /"]:
        r = server.ssh("alice", command)
        assert r.returncode == 1, command
        assert b"not allowed" in r.stderr or b"wharf" in r.stderr
    # The client may exit before the last record is written: wait for it.
    deadline = time.time() + 10
    while True:
        refused = [e for e in server.events() if e["name"] == "command.refused"]
        if len(refused) >= 4 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert len(refused) >= 4
    assert all(e["outcome"] == "failure" for e in refused)


def test_login_failures_are_recorded_without_the_password(server):
    server.add_account("carol", password="right-password-123", key=False)
    server.start()
    import paramiko
    with pytest.raises(paramiko.AuthenticationException):
        server.paramiko("carol", password="wrong-password-456")
    with pytest.raises(paramiko.AuthenticationException):
        server.paramiko("nobody", password="whatever-789")
    client = server.paramiko("carol", password="right-password-123")
    client.open_sftp().listdir(".")
    client.close()
    failed = server.wait_event("login.failed", account="carol")
    assert failed["attrs"]["method"] == "password" and "wrong password" in failed["message"]
    unknown = server.wait_event("login.failed", account="nobody")
    assert "unknown account" in unknown["message"]
    server.wait_event("login.succeeded", account="carol")
    trail = (server.root / "wharf-data" / "audit.jsonl").read_text()
    for secret in ["right-password-123", "wrong-password-456", "whatever-789"]:
        assert secret not in trail
        assert secret not in server.wharf("events", "--json", "--limit", "1000").stdout


def test_disabled_account_cannot_log_in(server):
    server.add_account("dave")
    server.start()
    server.wharf("account", "disable", "dave", check=True)
    r = server.sftp("dave", "ls\n", check=False)
    assert r.returncode != 0
    assert "account disabled" in server.wait_event("login.failed", account="dave")["message"]
    server.wharf("account", "enable", "dave", check=True)
    server.sftp("dave", "ls\n")


def raw_sftp_channel(server):
    client = server.paramiko("alice")
    channel = client.get_transport().open_session()
    channel.invoke_subsystem("sftp")
    channel.sendall(struct.pack(">IBI", 5, 1, 3))  # SSH_FXP_INIT, version 3
    length = struct.unpack(">I", channel.recv(4))[0]
    channel.recv(length)
    return client, channel


def test_oversized_packet_ends_the_session_not_the_server(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    client, channel = raw_sftp_channel(server)
    channel.sendall(struct.pack(">I", 0xFFFFFF00) + b"\x03" + b"x" * 100)
    channel.settimeout(10)
    data = b""
    while True:
        chunk = channel.recv(4096)
        if not chunk:
            break
        data += chunk
    assert channel.recv_exit_status() == 1
    client.close()
    server.wait_event("protocol.error", protocol="sftp")
    server.sftp("alice", "ls\n")


def test_unknown_requests_get_an_error(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    client, channel = raw_sftp_channel(server)
    # Packet type 99 with request id 42: answered with SSH_FX_OP_UNSUPPORTED (8).
    channel.sendall(struct.pack(">IBI", 5, 99, 42))
    length = struct.unpack(">I", channel.recv(4))[0]
    reply = channel.recv(length)
    kind, rid, code = struct.unpack(">BII", reply[:9])
    assert (kind, rid, code) == (101, 42, 8)
    # An unknown extension too.
    name = b"evil@example.com"
    body = struct.pack(">BI", 200, 43) + struct.pack(">I", len(name)) + name
    channel.sendall(struct.pack(">I", len(body)) + body)
    length = struct.unpack(">I", channel.recv(4))[0]
    kind, rid, code = struct.unpack(">BII", channel.recv(length)[:9])
    assert (kind, rid, code) == (101, 43, 8)
    client.close()


def test_handle_exhaustion_is_bounded(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "f.txt").write_text("x")
    client = server.paramiko("alice")
    sftp = client.open_sftp()
    handles = []
    with pytest.raises(IOError):
        for _ in range(2000):
            handles.append(sftp.open("f.txt", "rb"))
    assert 100 <= len(handles) < 2000
    client.close()
    server.sftp("alice", "get f.txt ok.txt\n")


def test_client_that_never_reads_does_not_stall_others(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    random_file(home / "big.bin", 8 * 1024 * 1024)
    client, channel = raw_sftp_channel(server)
    # Open the file, then ask for all of it and never read a reply.
    name = b"/big.bin"
    body = struct.pack(">BI", 3, 1) + struct.pack(">I", len(name)) + name + struct.pack(">II", 1, 0)
    channel.sendall(struct.pack(">I", len(body)) + body)
    length = struct.unpack(">I", channel.recv(4))[0]
    reply = channel.recv(length)
    handle = reply[9:9 + struct.unpack(">I", reply[5:9])[0]]
    for i in range(400):
        req = struct.pack(">BI", 5, 100 + i) + struct.pack(">I", len(handle)) + handle + struct.pack(">QI", i * 32768, 32768)
        channel.sendall(struct.pack(">I", len(req)) + req)
    rss_before = rss_kib(server.proc.pid)
    # Meanwhile another client works normally.
    start = time.time()
    server.sftp("alice", "get big.bin other.bin\n")
    assert sha256(server.root / "other.bin") == sha256(home / "big.bin")
    assert time.time() - start < 30
    # Unread replies stay bounded (in-flight requests and the reply queue), far below the file.
    assert rss_kib(server.proc.pid) - rss_before < 64 * 1024
    client.close()


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_protocols_allowed_per_group(server):
    server.wharf("group", "add", "scponly", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=all", "--protocols", "scp", check=True)
    home = server.add_account("sam", groups=["scponly"])
    server.start()
    src = random_file(server.root / "s.bin", 1000)
    server.scp(str(src), "sam@127.0.0.1:/s.bin", legacy=True)
    assert sha256(home / "s.bin") == sha256(src)
    r = server.sftp("sam", "ls\n", check=False)
    assert r.returncode != 0
    refused = server.wait_event("command.refused", account="sam")
    assert "sftp is not allowed" in refused["message"]


def test_hostile_names_get_errors_not_crashes(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    client = server.paramiko("alice")
    sftp = client.open_sftp()
    for name in [b"a\x00b", b"..\\..\\secret", b"\xff\xfe", b"line\nbreak", "é".encode() * 200]:
        with pytest.raises(IOError):
            sftp.open(name, "wb").write(b"x")
    # The session survives and still works.
    sftp.mkdir("fine")
    assert sftp.listdir(".") == ["fine"]
    client.close()
    assert os.listdir(home) == ["fine"]
    server.wait_event("permission.denied", account="alice")


def test_stalled_handshake_is_closed_after_login_grace(server):
    server.add_account("alice")
    server.short_login_grace(5)
    server.start()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.settimeout(15)
    start = time.time()
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    assert data.startswith(b"SSH-2.0-Wharf")
    assert time.time() - start < 12


def test_refused_upload_does_not_reveal_existence(server):
    server.wharf("group", "add", "listers", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=read", check=True)
    home = server.add_account("lee", groups=["listers"])
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "exists.txt").write_text("x")
    client = server.paramiko("lee")
    sftp = client.open_sftp()
    messages = []
    for name in ["exists.txt", "missing.txt"]:
        with pytest.raises(IOError) as err:
            sftp.open(name, "wb")
        messages.append(str(err.value).replace(name, "NAME"))
    client.close()
    assert messages[0] == messages[1]
    # Both refusals are recorded the same way, whichever check refused first.
    denied = [e for e in server.events() if e["name"] == "permission.denied"]
    assert len({e["attrs"]["verb"] for e in denied}) == 1 and len(denied) >= 2
