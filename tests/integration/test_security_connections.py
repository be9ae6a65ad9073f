"""Admission at accept and what the ban engine counts, attacked with real clients: a flood of
TCP connections against SSH, FTP and HTTPS (few `connection.refused` records that count the
rest, and a ban); the per-network rate of new connections (a burst beyond it is refused
while FTP data connections, an lftp mirror and clients of another address are not); an LDAP
directory or HTTP authentication service that is down (correct passwords refused, nobody
banned); SSH requests for a terminal, an environment, X11, an agent or forwarding (answered
at once with a failure); `max_per_ip` counted per the ban engine's network.

Loopback has one IPv6 address (::1), so two addresses of one /64 cannot meet here: that case
is a unit test of the admission (wharf-auth, `ban/admission.rs`). IPv4 loopback is a /8, so a
prefix shorter than 32 is tested end to end with 127.0.0.x source addresses."""

import ftplib
import json
import socket
import struct
import subprocess
import threading
import time

import paramiko
import pytest

from conftest import random_file, sha256
from logins import ftps_login, https_status
from raw_sockets import connect, first_bytes, greeting
from test_auth_ldap import LARA_PASSWORD, directory, search_then_bind, use_chain  # noqa: F401

PASSWORD = "correct horse battery staple"


def append(server, text):
    with open(server.root / "wharf.toml", "a") as f:
        f.write(text)


def set_option(server, old, new):
    config = server.root / "wharf.toml"
    text = config.read_text()
    assert old in text, old
    config.write_text(text.replace(old, new))


def flood(ports, seconds, limit):
    """Opens and at once resets TCP connections from 127.0.0.1 to each port in turn, for
    `seconds` or `limit` connections; returns how many were made."""
    made = 0
    deadline = time.time() + seconds
    linger = struct.pack("ii", 1, 0)  # close with a reset: no TIME_WAIT pile-up here
    while time.time() < deadline and made < limit:
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                pass
            s.close()
            made += 1
    return made


def from_host(event, host):
    return event.get("remote") and event["remote"].rsplit(":", 1)[0].strip("[]") == host


def refused_from(server, host):
    return [e for e in server.events() if e["name"] == "connection.refused" and from_host(e, host)]


def standing_for(records):
    """Refused connections the records stand for: each itself and its `suppressed` count."""
    return sum(1 + int(e["attrs"].get("suppressed", "0")) for e in records)


def curl_https(server, host):
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"alice:{PASSWORD}",
                        f"https://{host}:{server.https_port}/api/v1/files"],
                       capture_output=True, text=True, timeout=30)
    return r.stdout


def honest_clients_work_from_ipv6(server):
    out = server.sftp("alice", "ls\n", host="::1")
    assert out.returncode == 0
    assert curl_https(server, "[::1]") == "200"


# -- item 12: a flood of connections ----------------------------------------------------------

def test_a_connection_flood_writes_few_records_and_ends_in_a_ban(server):
    server.add_account("alice", password=PASSWORD)
    server.start()
    # The defaults: 60 new connections at once, 600 a minute; each refusal over the rate
    # scores 1, and 15 ban. Thousands of connections, SSH, explicit FTPS and HTTPS in turn.
    ports = [server.port, server.ftps_port, server.https_port]
    made = flood(ports, seconds=4, limit=6000)
    assert made >= 500, made

    ban = server.wait_event("ban.added", timeout=15)
    assert ban["attrs"]["network"] == "127.0.0.1/32"
    listed = json.loads(server.wharf("ban", "list", "--json", check=True).stdout)
    assert [b["network"] for b in listed] == ["127.0.0.1/32"]
    # Refused at accept on every service from now on, before any handshake.
    assert first_bytes("127.0.0.1", server.port) == b""
    assert first_bytes("127.0.0.1", server.ftps_port).startswith(b"421 address banned")
    assert first_bytes("127.0.0.1", server.https_port) == b""
    # The other address family is another client: OpenSSH sftp and curl still work.
    honest_clients_work_from_ipv6(server)

    time.sleep(3)  # held-back counts are written once their wait is over
    refused = refused_from(server, "127.0.0.1")
    rate = [e for e in refused if e["attrs"]["cause"] == "rate"]
    banned = [e for e in refused if e["attrs"]["cause"] == "banned"]
    # A handful of records, not one per connection: each (service, cause) is recorded at
    # once, then after 1, 2, 4... seconds, and a banned network once a minute.
    assert len(refused) <= 45, [(e["service"], e["attrs"]) for e in refused]
    assert {e["protocol"] for e in rate} == {"ssh", "ftp", "https"}
    assert any(int(e["attrs"].get("suppressed", "0")) > 0 for e in rate)
    # What the rate records stand for is what banned the network.
    assert standing_for(rate) >= 15
    assert int(ban["attrs"]["score"]) >= 15
    assert {e["protocol"] for e in banned} <= {"ssh", "ftp", "https"}
    assert len([e for e in banned if e["protocol"] == "ssh"]) <= 1
    assert all(e["attrs"]["network"] == "127.0.0.1/32" for e in refused)
    assert not refused_from(server, "::1")
    assert server.proc.poll() is None


def test_new_connections_beyond_the_rate_are_refused_and_others_still_work(server):
    append(server, "\n[ban]\nconnection_rate = 30\nconnection_burst = 10\n")
    server.add_ftp_service()
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    # An lftp mirror with three transfers at once: a few control connections, and one data
    # connection per file; data connections are not new clients and do not count.
    local = server.root / "local"
    for i in range(16):
        random_file(local / f"f{i:02}.bin", 20_000)
    settings = "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 15; "
    r = subprocess.run(["lftp", "-c", settings + f'open -u "alice,{PASSWORD}" -p {server.ftp_port} 127.0.0.1; '
                        "mirror -R --parallel=3 local remote"],
                       capture_output=True, text=True, timeout=120, cwd=server.root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(sha256(home / "remote" / f"f{i:02}.bin") == sha256(local / f"f{i:02}.bin")
               for i in range(16))
    assert refused_from(server, "127.0.0.1") == []

    # A burst of SSH connections from 127.0.0.1, held open: the bucket runs dry.
    held, answers = [], []
    for _ in range(15):
        s = connect("127.0.0.1", server.port)
        answers.append(greeting(s))
        held.append(s)
    served = [a for a in answers if a and a.startswith(b"SSH-2.0-")]
    refused = [a for a in answers if a == b""]
    assert len(served) + len(refused) == 15
    assert 1 <= len(served) <= 10 and len(refused) >= 4, answers
    # The limit is the network's, on every service: FTP says why. (A token drips back every
    # 2 s, so one of a few quick tries may be served.)
    ftp = [first_bytes("127.0.0.1", server.ftp_port) for _ in range(3)]
    assert any(f.startswith(b"421 too many new connections") for f in ftp), ftp
    # Another address is another client.
    honest_clients_work_from_ipv6(server)

    records = [e for e in refused_from(server, "127.0.0.1") if e["attrs"]["cause"] == "rate"]
    assert records and "too many new connections from 127.0.0.1/32" in records[0]["message"]
    # A few refusals are not a flood: scored, but far from a ban.
    time.sleep(2)
    assert not [e for e in server.events() if e["name"] == "ban.added"]
    # Tokens drip back (one every 2 s): the address is served again.
    for s in held:
        s.close()
    deadline = time.time() + 10
    while (first := first_bytes("127.0.0.1", server.port)) == b"" and time.time() < deadline:
        time.sleep(0.5)
    assert first and first.startswith(b"SSH-2.0-")


# -- item 15: outages are the server's, not the client's ----------------------------------------

def test_an_ldap_outage_bans_nobody(directory):  # noqa: F811 (the fixture, imported)
    server, slapd = directory
    use_chain(server, search_then_bind(slapd, f"ldaps://127.0.0.1:{slapd.ldaps_port}"))
    append(server, "\n[ban]\nthreshold = 4\n")
    server.start()
    ftps_login(server, "lara", LARA_PASSWORD).quit()

    slapd.stop()
    # More correct logins than the threshold, while the directory is down: all refused.
    for _ in range(6):
        with pytest.raises(ftplib.error_perm, match="530"):
            ftps_login(server, "lara", LARA_PASSWORD)
    failed = [e for e in server.events() if e["name"] == "login.failed" and e["account"] == "lara"]
    assert len(failed) == 6 and {e["attrs"]["cause"] for e in failed} == {"service-failed"}
    time.sleep(1)
    assert not [e for e in server.events() if e["name"] == "ban.added"]
    assert server.wharf("ban", "list", check=True).stdout.strip() == "no bans in force"

    # The directory is back: the same users, from the same network, log in.
    slapd.start()
    ftps_login(server, "lara", LARA_PASSWORD).quit()
    # A wrong password is still the client's, and still counts.
    for _ in range(4):
        with pytest.raises(ftplib.error_perm, match="530"):
            ftps_login(server, "lara", "not-her-password")
    assert server.wait_event("ban.added")["attrs"]["network"] == "127.0.0.1/32"


def test_an_http_authentication_service_outage_bans_nobody(server):
    # Nothing listens on this port: every login the service should decide fails.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    down = probe.getsockname()[1]
    probe.close()
    append(server, f"""
[[authentication]]
type = "http"
name = "partner-api"
url = "http://127.0.0.1:{down}/check"
timeout = 2

[[authentication]]
type = "local"

[ban]
threshold = 4
""")
    server.add_account("alice", password=PASSWORD)
    server.start()
    for _ in range(6):
        assert https_status(server, "alice", PASSWORD) == "401"
    failed = [e for e in server.events() if e["name"] == "login.failed"]
    assert len(failed) == 6 and {e["attrs"]["cause"] for e in failed} == {"service-failed"}
    time.sleep(1)
    assert not [e for e in server.events() if e["name"] == "ban.added"]
    assert server.wharf("ban", "list", check=True).stdout.strip() == "no bans in force"


# -- item 15: requests SSH never grants are answered -------------------------------------------

def answered(request, seconds=10):
    """Runs `request` (which waits for the server's answer) in a thread; the exception it
    ended with, or None. Fails when no answer came within `seconds`."""
    outcome = {}

    def run():
        try:
            request()
            outcome["error"] = None
        except Exception as e:  # noqa: BLE001 (the answer is what is checked)
            outcome["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "the server never answered"
    return outcome["error"]


def channel_request(channel, kind, *fields):
    """A channel request with want-reply set, waiting for the answer as paramiko does."""
    m = paramiko.Message()
    m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    m.add_int(channel.remote_chanid)
    m.add_string(kind)
    m.add_boolean(True)
    for field in fields:
        m.add_string(field)
    channel._event_pending()
    channel.transport._send_user_message(m)
    channel._wait_for_event()


def test_terminal_environment_x11_agent_and_forwarding_requests_are_refused_at_once(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "x.txt").write_text("x\n")
    client = server.paramiko("alice")
    transport = client.get_transport()

    started = time.time()
    error = answered(lambda: transport.open_session().get_pty())
    assert isinstance(error, paramiko.SSHException), error
    error = answered(lambda: transport.open_session().request_x11(auth_cookie="00" * 16))
    assert isinstance(error, paramiko.SSHException), error
    error = answered(lambda: channel_request(transport.open_session(), "env", "LANG", "C"))
    assert isinstance(error, paramiko.SSHException), error
    error = answered(lambda: channel_request(transport.open_session(), "auth-agent-req@openssh.com"))
    assert isinstance(error, paramiko.SSHException), error
    error = answered(lambda: transport.request_port_forward("127.0.0.1", 0))
    assert isinstance(error, paramiko.SSHException), error
    error = answered(lambda: transport.open_channel("direct-tcpip", ("127.0.0.1", server.port),
                                                    ("127.0.0.1", 1)))
    assert isinstance(error, paramiko.ChannelException), error
    assert time.time() - started < 10
    # The connection is still good for what the service offers.
    assert client.open_sftp().listdir(".") == ["x.txt"]
    client.close()
    refused = [e["message"] for e in server.events() if e["name"] == "command.refused"]
    assert "X11 forwarding refused" in refused and "agent forwarding refused" in refused
    assert any(m.startswith("port forwarding refused") for m in refused)

    # OpenSSH forcing a terminal (-tt) is told no at once, and, as it does with any server,
    # gives up rather than run without the terminal it insisted on.
    r = subprocess.run(["ssh", *server.ssh_opts(), "-tt", "-p", str(server.port), "alice@127.0.0.1",
                        "sha256sum", "x.txt"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert b"PTY allocation request failed" in r.stderr, r.stderr


# -- item 15: max_per_ip counts the ban engine's networks --------------------------------------

def test_max_per_ip_counts_the_ban_engines_networks(server):
    set_option(server, "max_per_ip = 20               # connections at once from one address",
               "max_per_ip = 2")
    append(server, "\n[ban]\nipv4_prefix = 24\n")
    server.add_account("alice")
    server.start()
    server.wait_event("connection.closed")  # the readiness probe has given its place back

    # Three loopback addresses of one /24: one allowance of two between them.
    held = [connect("127.0.0.1", server.port, source="127.0.0.1"),
            connect("127.0.0.1", server.port, source="127.0.0.2")]
    assert all(greeting(s).startswith(b"SSH-2.0-") for s in held)
    assert first_bytes("127.0.0.1", server.port, source="127.0.0.3") == b""
    refused = server.wait_event("connection.refused")
    assert refused["attrs"]["cause"] == "max-per-ip"
    assert refused["attrs"]["network"] == "127.0.0.0/24"
    assert refused["remote"].startswith("127.0.0.3:")
    # ::1 is in another network (its /64), with an allowance of its own.
    ipv6 = [connect("::1", server.port), connect("::1", server.port)]
    assert all(greeting(s).startswith(b"SSH-2.0-") for s in ipv6)
    assert first_bytes("::1", server.port) == b""
    # A closed connection gives the network's place back, to any of its addresses.
    held.pop().close()
    deadline = time.time() + 10
    while (first := first_bytes("127.0.0.1", server.port, source="127.0.0.3")) == b"":
        assert time.time() < deadline
        time.sleep(0.2)
    assert first.startswith(b"SSH-2.0-")
    for s in held + ipv6:
        s.close()
