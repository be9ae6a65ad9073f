"""The SSH service's settings: algorithms, banner, timeouts, limits, key types, lifecycle."""

import socket
import subprocess
import time

import pytest

from conftest import random_file


def set_option(server, old, new):
    config = server.root / "wharf.toml"
    text = config.read_text()
    assert old in text, old
    config.write_text(text.replace(old, new))


@pytest.mark.parametrize("option", [
    "Ciphers=aes128-cbc",
    "Ciphers=aes128-ctr -o MACs=hmac-sha1",
    "KexAlgorithms=diffie-hellman-group14-sha1",
    "HostKeyAlgorithms=ssh-rsa",
])
def test_weak_algorithms_are_refused(server, option):
    server.add_account("alice")
    server.start()
    extra = []
    for part in option.split(" -o "):
        extra += ["-o", part]
    opts = [o if o != "LogLevel=ERROR" else "LogLevel=INFO" for o in server.ssh_opts()]
    r = subprocess.run(["ssh", *opts, *extra, "-p", str(server.port), "alice@127.0.0.1", "sha256sum", "x"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 255
    assert "no matching" in r.stderr.lower() or "unable to negotiate" in r.stderr.lower()


def test_modern_negotiation_and_no_compression(server):
    server.add_account("alice")
    server.start()
    opts = [o if o != "LogLevel=ERROR" else "LogLevel=DEBUG2" for o in server.ssh_opts()]
    r = subprocess.run(["ssh", *opts, "-C", "-p", str(server.port),
                        "alice@127.0.0.1", "sha256sum", "missing"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    log = r.stderr
    assert "kex: algorithm: curve25519-sha256" in log or "kex: algorithm: mlkem768x25519-sha256" in log
    assert "compression: none" in log
    assert "strict KEX" in log or "kex-strict-s-v00@openssh.com" in log
    # Client offered compression (-C); the server offers none, so none was used.
    assert "compression: zlib" not in log


def test_configured_algorithm_lists_apply(server):
    set_option(server, '# ciphers = ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr"]',
               'ciphers = ["aes256-gcm@openssh.com"]')
    server.add_account("alice")
    server.start()
    r = subprocess.run(["ssh", *server.ssh_opts(), "-o", "Ciphers=chacha20-poly1305@openssh.com", "-p", str(server.port),
                        "alice@127.0.0.1", "sha256sum", "x"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 255
    server.sftp("alice", "ls\n", extra=["-o", "Ciphers=aes256-gcm@openssh.com"])


def test_banner_is_shown(server):
    set_option(server, '# banner = "Authorised use only."', 'banner = "Authorised use only."')
    server.add_account("alice")
    server.start()
    opts = [o if o != "LogLevel=ERROR" else "LogLevel=INFO" for o in server.ssh_opts()]
    r = subprocess.run(["ssh", *opts, "-p", str(server.port), "alice@127.0.0.1", "sha256sum", "x"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert "Authorised use only." in r.stderr


def test_idle_connections_are_closed(server):
    set_option(server, "idle_timeout = 600", "idle_timeout = 2")
    server.add_account("alice")
    server.start()
    client = server.paramiko("alice")
    sftp = client.open_sftp()
    sftp.listdir(".")
    time.sleep(4)
    assert not client.get_transport().is_active()
    client.close()


def test_connection_limit(server):
    set_option(server, "max_connections = 256", "max_connections = 1")
    server.add_account("alice")
    server.start()
    # The readiness probe used the only slot; wait until it is given back.
    server.wait_event("connection.closed")
    held = socket.create_connection(("127.0.0.1", server.port))
    assert held.recv(64).startswith(b"SSH-2.0-Wharf")
    second = socket.create_connection(("127.0.0.1", server.port))
    second.settimeout(5)
    assert second.recv(64) == b""
    server.wait_event("connection.refused")
    held.close()
    second.close()


def test_auth_tries_are_limited(server):
    set_option(server, "max_auth_tries = 6", "max_auth_tries = 2")
    server.add_account("carol", password="the-right-one", key=False)
    server.start()
    import paramiko
    transport = paramiko.Transport(("127.0.0.1", server.port))
    transport.start_client(timeout=10)
    client_end = "%s:%d" % transport.sock.getsockname()[:2]
    started = time.time()
    with pytest.raises(EOFError):
        for _ in range(5):
            try:
                transport.auth_password("carol", "wrong")
            except paramiko.AuthenticationException:
                pass
            if not transport.is_active():
                raise EOFError("disconnected")
    transport.close()
    # Each try was answered (no client waited out its timeout), and the server checked two.
    assert time.time() - started < 10
    server.wait_event("connection.closed", remote=client_end)
    checked = [e for e in server.events() if e["name"] == "login.failed" and e["account"] == "carol"]
    assert len(checked) == 2


def test_a_client_may_try_a_key_then_its_password(server):
    """paramiko (and what is built on it: Ansible, Airflow, pysftp) asks for the
    ssh-userauth service again before each method; the server answers each request, so a
    key that is refused is followed by the password on the same connection."""
    server.add_account("dora", password="the-right-one", key=False)
    server.start()
    import paramiko
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    started = time.time()
    client.connect("127.0.0.1", port=server.port, username="dora", password="the-right-one",
                   key_filename=str(server.key), allow_agent=False, look_for_keys=False,
                   timeout=10, auth_timeout=10)
    # Well under auth_timeout: the refused key was answered, not waited out.
    assert time.time() - started < 9
    sftp = client.open_sftp()
    assert sftp.listdir(".") == []
    client.close()
    ok = server.wait_event("login.succeeded", account="dora")
    assert ok["attrs"]["method"] == "password"


@pytest.mark.parametrize("kind", [["-t", "rsa", "-b", "3072"], ["-t", "ecdsa", "-b", "256"], ["-t", "ed25519"]])
def test_user_key_types(server, kind):
    key = server.root / "userkey"
    subprocess.run(["ssh-keygen", "-q", *kind, "-N", "", "-f", str(key)], check=True)
    server.wharf("account", "add", "kim", "--ssh-key", str(key) + ".pub", check=True)
    server.start()
    r = subprocess.run(["sftp", *server.ssh_opts(key=key), "-P", str(server.port), "-b", "-", "kim@127.0.0.1"],
                       input="ls\n", capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    event = server.wait_event("login.succeeded", account="kim")
    assert event["attrs"]["method"] == "publickey" and event["attrs"]["key"].startswith("SHA256:")
    # A key the account does not hold is refused.
    other = server.root / "otherkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    r = subprocess.run(["sftp", *server.ssh_opts(key=other), "-P", str(server.port), "-b", "-", "kim@127.0.0.1"],
                       input="ls\n", capture_output=True, text=True, timeout=30)
    assert r.returncode != 0


def test_lifecycle_and_transfer_fields(server):
    home = server.add_account("alice")
    server.start()
    src = random_file(server.root / "f.bin", 100_000)
    server.sftp("alice", f"put {src} f.bin\nget f.bin g.bin\n")
    server.stop()
    names = [e["name"] for e in server.events()]
    for expected in ["service.started", "server.started", "service.stopped", "server.stopped",
                     "connection.opened", "connection.closed", "session.started", "session.ended",
                     "upload.started", "download.started"]:
        assert expected in names, expected
    up = [e for e in server.events() if e["name"] == "upload.finished"][0]
    down = [e for e in server.events() if e["name"] == "download.finished"][0]
    for e in (up, down):
        assert e["bytes"] == 100_000 and "duration_ms" in e and e["node"] == "wharf-1" and e["service"] == "ssh"
        assert e["session"] and e["time"].endswith("Z")
    closed = [e for e in server.events() if e["name"] == "connection.closed" and e.get("account") == "alice"][0]
    assert "duration_ms" in closed
    assert (home / "f.bin").exists()
