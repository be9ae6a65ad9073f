"""The ban engine: failures on any protocol add up per client network; a banned network is
refused at accept on every service, before any TLS or SSH handshake; bans lift on time,
grow for repeat offenders, survive a restart and can be lifted by an administrator."""

import ftplib
import json
import subprocess
import time

import paramiko
import pytest

from raw_sockets import first_bytes

PASSWORD = "correct horse battery staple"


def configure(server, **ban):
    settings = {"threshold": 4, "window": 60, "ban_time": 3, "growth_percent": 100,
                "max_ban_time": 600, **ban}
    server.add_ftp_service()
    with open(server.root / "wharf.toml", "a") as f:
        f.write("\n[ban]\n")
        for key, value in settings.items():
            f.write(f"{key} = {json.dumps(value)}\n")
    server.add_account("alice", password=PASSWORD)
    server.start()


def refused_everywhere(server, host):
    assert first_bytes(host, server.port) == b""  # SSH: no banner
    assert first_bytes(host, server.ftp_port).startswith(b"421 address banned")
    assert first_bytes(host, server.ftps_port).startswith(b"421 address banned")
    assert first_bytes(host, server.implicit_port) == b""  # implicit FTPS: no handshake
    assert first_bytes(host, server.https_port) == b""  # HTTPS: no handshake


def served_everywhere(server, host):
    assert first_bytes(host, server.port).startswith(b"SSH-2.0-")
    assert first_bytes(host, server.ftp_port).startswith(b"220")
    assert first_bytes(host, server.ftps_port).startswith(b"220")
    assert first_bytes(host, server.implicit_port) is None
    assert first_bytes(host, server.https_port) is None


def wrong_ftp_password(server, host, user="alice"):
    c = ftplib.FTP()
    c.connect(host, server.ftp_port, timeout=15)
    with pytest.raises(ftplib.error_perm, match="530"):
        c.login(user, "wrong")
    c.close()


def unknown_sftp_account(server, host):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(host, port=server.port, username="nobody", password="guess",
                       allow_agent=False, look_for_keys=False, timeout=10)
    client.close()


def network_of(host):
    return "127.0.0.1/32" if host == "127.0.0.1" else "::/64"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_failures_across_protocols_ban_then_lift_then_grow(server, host):
    configure(server, ban_time=6)
    other = "::1" if host == "127.0.0.1" else "127.0.0.1"
    # 1 + 1 (wrong FTP passwords) + 2 (unknown account over SFTP) reaches the threshold of 4.
    wrong_ftp_password(server, host)
    wrong_ftp_password(server, host)
    unknown_sftp_account(server, host)
    ban = server.wait_event("ban.added")
    assert ban["attrs"]["network"] == network_of(host)
    assert ban["attrs"]["strikes"] == "1" and ban["attrs"]["seconds"] == "6"
    assert ban["remote"].rsplit(":", 1)[0].strip("[]") == host
    listed = json.loads(server.wharf("ban", "list", "--json", check=True).stdout)
    assert [b["network"] for b in listed] == [network_of(host)]
    refused_everywhere(server, host)
    # The other address family is another client: it is still served.
    served_everywhere(server, other)
    refused = server.wait_event("connection.refused")
    assert "banned until" in refused["message"] and refused["attrs"]["cause"] == "banned"

    # The ban ends on time, and the account works again from that address.
    lifted = server.wait_event("ban.lifted", timeout=15)
    assert lifted["attrs"]["network"] == network_of(host)
    served_everywhere(server, host)
    c = ftplib.FTP()
    c.connect(host, server.ftp_port, timeout=15)
    c.login("alice", PASSWORD)
    c.quit()

    # A repeat offender's next ban is twice as long.
    for _ in range(4):
        wrong_ftp_password(server, host)
    bans = [e for e in server.events() if e["name"] == "ban.added"]
    deadline = time.time() + 10
    while len(bans) < 2 and time.time() < deadline:
        time.sleep(0.2)
        bans = [e for e in server.events() if e["name"] == "ban.added"]
    assert bans[-1]["attrs"]["strikes"] == "2" and bans[-1]["attrs"]["seconds"] == "12"
    refused_everywhere(server, host)


def test_bans_survive_a_restart_and_an_administrator_lifts_them(server):
    configure(server, ban_time=600, safelist=["::1"])
    # Two unknown accounts (2 + 2) reach the threshold.
    wrong_ftp_password(server, "127.0.0.1", user="nobody")
    wrong_ftp_password(server, "127.0.0.1", user="nobody2")
    server.wait_event("ban.added")
    refused_everywhere(server, "127.0.0.1")
    # A safelisted network is never banned, however often it fails.
    for _ in range(3):
        wrong_ftp_password(server, "::1", user="nobody")
    served_everywhere(server, "::1")

    # The store keeps the ban: a restarted server refuses the address from its first accept.
    server.stop()
    server.start()
    refused_everywhere(server, "127.0.0.1")

    out = server.wharf("ban", "list", check=True).stdout
    assert out.startswith("127.0.0.1/32 ") and "strikes 1" in out
    bad = server.wharf("ban", "remove", "not-an-address")
    assert bad.returncode != 0 and "not an IP address" in bad.stderr
    missing = server.wharf("ban", "remove", "192.0.2.1")
    assert missing.returncode != 0 and "no ban for 192.0.2.1" in missing.stderr
    server.wharf("ban", "remove", "127.0.0.1", check=True)
    removed = server.wait_event("ban.removed")
    assert removed["attrs"]["network"] == "127.0.0.1/32" and removed["protocol"] == "admin"
    # The running server follows the store within a few seconds.
    deadline = time.time() + 15
    while first_bytes("127.0.0.1", server.port) == b"" and time.time() < deadline:
        time.sleep(0.5)
    served_everywhere(server, "127.0.0.1")
    assert server.wharf("ban", "list", check=True).stdout.strip() == "no bans in force"


def test_a_path_traversal_scan_over_https_is_banned(server):
    configure(server, threshold=6, ban_time=600)
    # Each refused path is a protocol.error (score 2): the third one bans the scanner.
    statuses = []
    for evil in ["%2e%2e/wharf.toml", "..%5cwharf.toml", "%00wharf.toml"]:
        result = subprocess.run(
            ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"alice:{PASSWORD}",
             "--path-as-is", f"https://127.0.0.1:{server.https_port}/api/v1/files/{evil}"],
            capture_output=True, text=True, timeout=30)
        statuses.append(result.stdout)
    assert statuses == ["400", "400", "400"]
    ban = server.wait_event("ban.added")
    assert ban["protocol"] == "https" and ban["attrs"]["score"] == "6"
    refused_everywhere(server, "127.0.0.1")
