"""Live configuration: `wharf reload` (or SIGHUP) applies the file to the running server. A
new service starts listening, a removed one stops accepting while its open sessions finish,
a changed handler applies to the next upload while an SFTP session opened before goes on,
a renewed certificate serves the next handshakes, and a file that does not validate changes
nothing and says why."""

import os
import signal
import socket
import ssl
import subprocess
import time

from conftest import free_port

PASSWORD = "reload pass phrase 1"


def reload(server):
    return server.wharf("reload")


def cert_of(port):
    return ssl.get_server_certificate(("127.0.0.1", port), timeout=10)


def listens(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def test_reload_starts_retires_and_switches_handlers(server):
    server.add_account("rita", password=PASSWORD)
    server.start()
    config = server.root / "wharf.toml"
    original = config.read_text()
    # A session opened before the reload, on the service that stays.
    client = server.paramiko("rita")
    sftp = client.open_sftp()
    sftp.mkdir("inbox")
    with sftp.open("inbox/before.txt", "w") as f:
        f.write("written before the reload\n")
    # An implicit-FTPS connection opened before its service is removed.
    held = socket.create_connection(("127.0.0.1", server.implicit_port), timeout=5)
    http_port = free_port()
    changed = original.replace(
        '[[service]]\nname = "ftps"\ntype = "ftps-implicit"', '[[service]]\nname = "ftps"\ntype = "ftps-implicit"\n# retired below')
    start = changed.index('[[service]]\nname = "ftps"')
    end = changed.index("[[service]]", start + 1)
    changed = changed[:start] + changed[end:]
    changed += f"""
[[service]]
name = "plain-http"
type = "http"
address = ["127.0.0.1", "::1"]
port = {http_port}

[[handler]]
name = "unique-names"
on = ["upload.finished"]
path = "/inbox/*"

[handler.uuid-prefix]
"""
    config.write_text(changed)
    out = reload(server)
    assert out.returncode == 0, out.stderr
    assert "started: plain-http" in out.stdout and "retired: ftps" in out.stdout, out.stdout
    assert "handlers replaced" in out.stdout
    assert listens(http_port) and listens(http_port, "::1")
    assert not listens(server.implicit_port)
    # The connection made before the removal is still open (its session finishes on its own).
    held.settimeout(5)
    greeting = ssl.create_default_context()
    greeting.check_hostname = False
    greeting.verify_mode = ssl.CERT_NONE
    with greeting.wrap_socket(held) as tls:
        assert tls.recv(100).startswith(b"220")
    # The session opened before the reload goes on, and its next upload follows the new handler.
    with sftp.open("inbox/after.txt", "w") as f:
        f.write("written after the reload\n")
    deadline = time.time() + 10
    while time.time() < deadline:
        names = sftp.listdir("inbox")
        if any(n.endswith("-after.txt") for n in names):
            break
        time.sleep(0.2)
    assert "before.txt" in names and any(n.endswith("-after.txt") and len(n) == 36 + 1 + 9 for n in names), names
    # The handler removed again: the next upload keeps its name, as it commits and after.
    config.write_text(changed[:changed.index("[[handler]]")])
    out = reload(server)
    assert out.returncode == 0 and "handlers replaced" in out.stdout, out.stdout + out.stderr
    with sftp.open("inbox/later.txt", "w") as f:
        f.write("written once the handler was gone\n")
    server.wait_event("upload.finished", path="/inbox/later.txt")
    time.sleep(1)
    assert "later.txt" in sftp.listdir("inbox"), sftp.listdir("inbox")
    assert not [e for e in server.events() if e["name"] == "file.prefixed" and "later" in e["path"]]
    sftp.close()
    client.close()
    reloaded = server.wait_event("configuration.reloaded")
    assert reloaded["attrs"]["handlers"] == "true"
    stopped = [e for e in server.events() if e["name"] == "service.stopped" and e.get("service") == "ftps"]
    assert stopped and "retired" in stopped[0]["message"]
    # The dashboard's list follows: the Manager lists the new service, not the retired one.
    import manager_client
    status, body = manager_client.api(server, "GET", "/api/v1/services",
                                      token=admin_token(server))
    names = [s["name"] for s in body["services"]]
    assert "plain-http" in names and "ftps" not in names


def admin_token(server):
    server.wharf("admin", "add", "reloader", "--role", "auditor", "--password-stdin",
                 input="auditor pass phrase 1\n", check=True)
    return server.wharf("admin", "token", "add", "reload-ci", "--admin", "reloader", "--role",
                        "auditor", check=True).stdout.strip()


def test_a_configuration_that_does_not_validate_changes_nothing(server):
    server.start()
    config = server.root / "wharf.toml"
    original = config.read_text()
    config.write_text(original + '\n[[service]]\nname = "broken"\ntype = "ssh"\nport = 0\n')
    # `wharf reload` checks the file first, and says what is wrong with it.
    out = reload(server)
    assert out.returncode == 1
    assert "wharf.toml:" in out.stderr and "service[5].port" in out.stderr, out.stderr
    # SIGHUP reaches the server all the same; it refuses the file and records why.
    os.kill(server.proc.pid, signal.SIGHUP)
    time.sleep(1)
    config.write_text(original)  # the commands read the file too
    refused = server.wait_event("configuration.refused")
    assert "port 0" in refused["message"]
    for port in (server.port, server.https_port, server.implicit_port, server.manager_port):
        assert listens(port), port


def test_a_renewed_certificate_serves_the_next_handshakes(server):
    server.start()
    before = cert_of(server.https_port)
    tls = server.root / "wharf-data" / "tls"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=renewed.example", "-keyout", str(tls / "key.pem"),
                    "-out", str(tls / "certificate.pem")], check=True, capture_output=True)
    out = reload(server)
    assert out.returncode == 0, out.stderr
    after = cert_of(server.https_port)
    assert after != before
    assert cert_of(server.manager_port) == after
    # A certificate that does not load changes nothing.
    (tls / "key.pem").write_text("not a key\n")
    out = reload(server)
    assert out.returncode == 1 and "[tls]" in out.stderr
    assert cert_of(server.https_port) == after


def ftp_server_with_ban(server, threshold):
    """`rita` on a plain FTP service, `[ban] threshold` as given, started; the file as it
    was before the `[ban]` section (to write variants of it)."""
    server.add_account("rita", password=PASSWORD)
    server.add_ftp_service()
    config = server.root / "wharf.toml"
    original = config.read_text()
    config.write_text(original + f"\n[ban]\nthreshold = {threshold}\n")
    server.start()
    return config, original


def test_reload_switches_the_authentication_chain_and_the_ban_policy(server):
    import ftplib

    import pytest

    config, original = ftp_server_with_ban(server, 100)
    # Three wrong passwords stay far under a threshold of 100.
    for _ in range(3):
        with pytest.raises(ftplib.error_perm):
            server.ftp("rita", "not the password")
    server.ftp("rita", PASSWORD).quit()

    # A chain of one HTTP method whose service is not there: the stored account cannot log in.
    gone = free_port()
    config.write_text(original + f'\n[ban]\nthreshold = 100\n\n[[authentication]]\ntype = "http"\n'
                      f'url = "http://127.0.0.1:{gone}/check"\ntimeout = 1\n')
    out = reload(server)
    assert out.returncode == 0 and "authentication chain http" in out.stdout, out.stdout + out.stderr
    with pytest.raises(ftplib.error_perm):
        server.ftp("rita", PASSWORD)
    refused = server.wait_event("login.failed", account="rita", protocol="ftp")
    refused = [e for e in server.events() if e["name"] == "login.failed"][-1]
    assert refused["attrs"]["authenticator"] == "http", refused

    # Back to the stored accounts, with a threshold the next wrong password reaches
    # (three wrong passwords already count 3 within the window).
    config.write_text(original + "\n[ban]\nthreshold = 4\n")
    out = reload(server)
    assert out.returncode == 0 and "authentication chain local" in out.stdout, out.stdout + out.stderr
    server.ftp("rita", PASSWORD).quit()
    assert not [e for e in server.events() if e["name"] == "ban.added"]
    with pytest.raises(ftplib.error_perm):
        server.ftp("rita", "not the password")
    banned = server.wait_event("ban.added")
    assert banned["attrs"]["network"] == "127.0.0.1/32", banned


def test_bans_in_force_hold_when_a_reload_changes_the_prefixes(server):
    """A ban is kept under the network it was set for: a reload that counts addresses by
    another prefix still refuses them, and so does an administrator's wider ban."""
    import ftplib

    import pytest

    config, original = ftp_server_with_ban(server, 3)
    for _ in range(3):
        with pytest.raises(ftplib.Error):
            server.ftp("rita", "not the password")
    assert server.wait_event("ban.added")["attrs"]["network"] == "127.0.0.1/32"
    config.write_text(original + "\n[ban]\nthreshold = 3\nipv4_prefix = 24\n")
    assert reload(server).returncode == 0
    with pytest.raises(ftplib.error_temp, match="421"):
        server.ftp("rita", PASSWORD)
    # Lifted, then banned again as a whole /8 by an administrator: refused all the same.
    server.wharf("ban", "remove", "127.0.0.1/32", check=True)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            server.ftp("rita", PASSWORD).quit()
            break
        except ftplib.error_temp:
            time.sleep(0.5)
    else:
        raise AssertionError("the lifted ban still refuses")
    server.wharf("ban", "add", "127.0.0.0/8", "--reason", "whole loopback", check=True)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            server.ftp("rita", PASSWORD).quit()
            time.sleep(0.5)
        except ftplib.error_temp as e:
            assert "421" in str(e)
            break
    else:
        raise AssertionError("a /8 ban does not refuse an address inside it")


def test_reload_switches_the_audit_sinks(server):
    """An `[[audit.sink]]` added by a reload takes the next records; one removed takes no
    more; a sink that cannot be built changes nothing."""
    import json

    config, original = ftp_server_with_ban(server, 100)
    copy = server.root / "elsewhere" / "logins.jsonl"
    sink = f'\n[[audit.sink]]\ntype = "jsonl"\npath = "{copy}"\nevents = ["login.succeeded"]\n'
    config.write_text(config.read_text() + sink)
    out = reload(server)
    assert out.returncode == 0 and "audit sinks replaced" in out.stdout, out.stdout + out.stderr
    server.ftp("rita", PASSWORD).quit()
    server.wait_event("login.succeeded", account="rita")
    deadline = time.time() + 10
    while not (copy.exists() and copy.read_text().strip()):
        assert time.time() < deadline, "the new sink took no record"
        time.sleep(0.1)
    [line] = copy.read_text().splitlines()
    assert json.loads(line)["name"] == "login.succeeded"

    # A reload that changes nothing there leaves the sink as it is.
    out = reload(server)
    assert "audit sinks unchanged" in out.stdout, out.stdout

    # A sink that does not validate: refused, the running sinks stay.
    with_bad = config.read_text()
    config.write_text(with_bad + '\n[[audit.sink]]\ntype = "syslog"\nurl = "udp://localhost"\n')
    out = reload(server)
    assert out.returncode != 0 and "audit.sink[1].url" in out.stderr + out.stdout, out.stdout + out.stderr
    server.ftp("rita", PASSWORD).quit()
    deadline = time.time() + 10
    while len(copy.read_text().splitlines()) < 2:
        assert time.time() < deadline, f"the sink stopped after a bad reload: {out.stdout}{out.stderr}"
        time.sleep(0.1)

    # Removed: no more records go there.
    config.write_text(original + "\n[ban]\nthreshold = 100\n")
    out = reload(server)
    assert out.returncode == 0 and "audit sinks replaced" in out.stdout, out.stdout + out.stderr
    before = len(copy.read_text().splitlines())
    server.ftp("rita", PASSWORD).quit()
    time.sleep(1)
    server.wait_event("server.started")
    logins = [e for e in server.events() if e["name"] == "login.succeeded"]
    assert len(logins) == 3 and len(copy.read_text().splitlines()) == before
