"""Where an account may log in from (allow/deny networks on accounts and groups) and until
when (expiry), enforced the same way on SSH, FTPS and HTTPS."""

import ftplib
import json
import socket
import subprocess
import time

import paramiko
import pytest

from ftp_clients import ReusingFTP_TLS, tls_client_context

PASSWORD = "correct horse battery staple"


def sftp_ok(server, user, host):
    try:
        server.paramiko(user, host=host).close()
        return True
    except paramiko.AuthenticationException:
        return False


def ftps_ok(server, user, host):
    client = ReusingFTP_TLS(context=tls_client_context())
    client.connect(host, server.ftps_port, timeout=15)
    try:
        client.login(user, PASSWORD)
        client.quit()
        return True
    except ftplib.error_perm as e:
        assert str(e).startswith("530")
        return False


def https_ok(server, user, host):
    url = f"https://{'[::1]' if host == '::1' else host}:{server.https_port}/api/v1/files"
    result = subprocess.run(["curl", "-sk", "-g", "-o", "/dev/null", "-w", "%{http_code}",
                             "-u", f"{user}:{PASSWORD}", url],
                            capture_output=True, text=True, timeout=30)
    assert result.stdout in ("200", "401"), result.stdout
    return result.stdout == "200"


def logins(server, user, host):
    return [sftp_ok(server, user, host), ftps_ok(server, user, host), https_ok(server, user, host)]


def test_group_and_account_networks_apply_on_every_protocol(server):
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=all", "--deny-from", "127.0.0.0/8", check=True)
    server.add_account("carol", password=PASSWORD, groups=["partners"])
    server.add_account("dave", password=PASSWORD)
    server.wharf("account", "set", "dave", "--allow-from", "::1", check=True)
    server.start()
    # carol's group refuses IPv4 loopback; dave may only come from ::1.
    assert logins(server, "carol", "127.0.0.1") == [False, False, False]
    assert logins(server, "carol", "::1") == [True, True, True]
    assert logins(server, "dave", "127.0.0.1") == [False, False, False]
    assert logins(server, "dave", "::1") == [True, True, True]
    refused = [e for e in server.events()
               if e["name"] == "login.failed" and e["attrs"].get("cause") == "address-not-allowed"]
    assert {e["protocol"] for e in refused} >= {"ssh", "ftps", "https"}
    assert all(e["message"] == "address not allowed for this account" for e in refused)

    # Changes apply at the next login, without a restart.
    server.wharf("account", "set", "dave", "--any-address", check=True)
    assert logins(server, "dave", "127.0.0.1") == [True, True, True]
    server.wharf("group", "set", "partners", "--any-address", check=True)
    assert sftp_ok(server, "carol", "127.0.0.1")
    shown = server.wharf("group", "show", "partners", check=True).stdout
    assert "from:          any" in shown


def test_expired_accounts_are_refused_and_can_be_extended(server):
    server.add_account("erin", password=PASSWORD)
    server.wharf("account", "set", "erin", "--expires", "2020-01-01", check=True)
    server.start()
    assert logins(server, "erin", "127.0.0.1") == [False, False, False]
    failed = server.wait_event("login.failed", account="erin")
    assert failed["message"] == "account expired" and failed["attrs"]["cause"] == "expired"
    shown = json.loads(server.wharf("account", "show", "erin", "--json", check=True).stdout)
    assert shown["expires"] == "2020-01-01T00:00:00Z"
    server.wharf("account", "set", "erin", "--expires", "2999-12-31", check=True)
    assert logins(server, "erin", "::1") == [True, True, True]
    server.wharf("account", "set", "erin", "--expires", "never", check=True)
    assert "expires:  never" in server.wharf("account", "show", "erin", check=True).stdout


def test_cli_and_apply_check_networks_and_dates(server):
    server.add_account("fred", password=PASSWORD)
    for args, message in [
        (["account", "set", "fred", "--allow-from", "10.0.0.0/33"], "not an IP address or network"),
        (["account", "set", "fred", "--deny-from", "example.com"], "not an IP address or network"),
        (["account", "set", "fred", "--expires", "soon"], "use a date"),
        (["account", "set", "fred"], "nothing to change"),
        # Groups have no expiry: the option does not exist for them.
        (["group", "set", "users", "--expires", "2030-01-01"], "unexpected argument '--expires'"),
    ]:
        result = server.wharf(*args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    server.wharf("account", "set", "fred", "--allow-from", "2001:db8::7/48",
                 "--allow-from", "192.0.2.9", "--deny-from", "2001:db8:0:1::/64",
                 "--expires", "2031-05-01", check=True)
    exported = server.wharf("export", check=True).stdout
    assert 'allow_from = ["2001:db8::/48", "192.0.2.9/32"]' in exported
    assert 'deny_from = ["2001:db8:0:1::/64"]' in exported
    assert 'expires = "2031-05-01T00:00:00Z"' in exported
    # The export re-applies as a no-op; a bad network in a file names the file and line.
    (server.root / "export.toml").write_text(exported)
    again = server.wharf("apply", str(server.root / "export.toml"), check=True).stdout
    assert "0 created, 0 updated" in again
    (server.root / "bad.toml").write_text('[[account]]\nname = "gail"\nallow_from = ["10.0.0.300"]\n')
    bad = server.wharf("apply", str(server.root / "bad.toml"))
    assert bad.returncode != 0 and "bad.toml:3" in bad.stderr and "10.0.0.300" in bad.stderr


def test_connections_per_address_are_capped_on_ssh_and_https(server):
    config = (server.root / "wharf.toml").read_text()
    config = config.replace("max_per_ip = 20               # connections at once from one address",
                            "max_per_ip = 2")
    config = config.replace("max_connections = 256\nmax_per_ip = 20\nmax_upload_size",
                            "max_connections = 256\nmax_per_ip = 2\nmax_upload_size")
    assert config.count("max_per_ip = 2\n") == 2
    (server.root / "wharf.toml").write_text(config)
    server.start()

    def greeting(host, port):
        s = socket.create_connection((host, port), timeout=5)
        s.settimeout(2)
        try:
            return s, s.recv(100)
        except socket.timeout:
            return s, None

    def served(first, open_reply):
        return first is None if open_reply is None else bool(first) and first.startswith(open_reply)

    held = []
    for port, open_reply in [(server.port, b"SSH-2.0-"), (server.https_port, None)]:
        for _ in range(2):
            # A connection closed a moment ago (the start-up probe) may still hold its slot
            # until the server sees it end: try again until this one is served.
            deadline = time.time() + 10
            s, first = greeting("127.0.0.1", port)
            while not served(first, open_reply):
                s.close()
                assert time.time() < deadline, port
                time.sleep(0.2)
                s, first = greeting("127.0.0.1", port)
            held.append(s)
        s, first = greeting("127.0.0.1", port)
        assert first == b"", port  # the third from the same address is closed at once
        s.close()
        # Another address is counted on its own.
        s, first = greeting("::1", port)
        assert first is None if open_reply is None else first.startswith(open_reply)
        s.close()
    refused = [e for e in server.events() if e["name"] == "connection.refused"]
    assert {e["protocol"] for e in refused} == {"ssh", "https"}
    assert all(e["message"] == "too many connections from this address" for e in refused)
    for s in held:
        s.close()
    # Closed connections give their slots back.
    deadline = time.time() + 10
    while True:
        s, first = greeting("127.0.0.1", server.port)
        s.close()
        if first and first.startswith(b"SSH-2.0-"):
            break
        assert time.time() < deadline


def test_failed_logins_per_ftp_connection_are_configurable(server):
    server.add_ftp_service(extra="max_auth_tries = 1")
    server.add_account("gina", password=PASSWORD)
    server.start()
    c = ftplib.FTP()
    c.connect("127.0.0.1", server.ftp_port, timeout=15)
    with pytest.raises(ftplib.error_temp, match="421"):
        c.login("gina", "not-her-password")
    c.close()
    bad = server.wharf("check-config")
    assert bad.returncode == 0
    with open(server.root / "wharf.toml", "a") as f:
        f.write('\n[[service]]\nname = "web2"\ntype = "https"\nport = 1\nmax_auth_tries = 2\n')
    bad = server.wharf("check-config")
    assert bad.returncode == 1 and "max_auth_tries" in bad.stderr and "applies to ssh and ftp" in bad.stderr
