"""Behind a load balancer: services with `proxy_protocol = true` take the client's address
from the balancer's PROXY header (v1 or v2), so events, bans and limits name the client and
not the balancer; anything else reaching them is refused and recorded. Real HAProxy in front
(SFTP, explicit and implicit FTPS with passive data through the balancer, HTTPS), raw sockets
for what a balancer should never send, and the health listener balancers probe."""

import io
import json
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request

import paramiko
import pytest

from conftest import WharfServer, free_port, random_file, sha256
from ftp_clients import ImplicitFTP_TLS, ReusingFTP_TLS, tls_client_context
from raw_sockets import connect, greeting

PASSWORD = "correct horse battery staple"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# The address the tests' "is HAProxy up?" probe connects from (through the balancer, so
# wharf records it like any client).
PROBE = "127.0.0.250"


def host_of(remote):
    """The address of an event's `remote` ("127.0.0.2:5000", "[::1]:5000")."""
    return remote.rsplit(":", 1)[0].strip("[]")


def behind_balancer(server, services=("ssh", "ftp", "ftps", "https"), proxy_from='["127.0.0.1"]',
                    passive=None, extra=""):
    """Turns the PROXY protocol on for `services` of the default configuration."""
    config = (server.root / "wharf.toml").read_text()
    for name in services:
        line = f'name = "{name}"\n'
        assert line in config
        keys = f"proxy_protocol = true\nproxy_from = {proxy_from}\n"
        if passive and name in ("ftp", "ftps"):
            keys += f"passive_ports = [{passive[0]}, {passive[1]}]\n"
        config = config.replace(line, line + keys, 1)
    (server.root / "wharf.toml").write_text(config + extra)


def start(server):
    """Starts wharf; its readiness probe (a bare connection from 127.0.0.1) is refused by a
    PROXY-protocol SSH service and recorded, which the tests below tell apart by address."""
    server.start()
    return server


def passive_range(count=4):
    """`count` consecutive ports free on 127.0.0.1 and ::1 (wharf binds the first family,
    HAProxy the second)."""
    for _ in range(200):
        first = free_port()
        ports = [first]
        while len(ports) < count:
            p = free_port()
            if p != ports[-1] + 1:
                break
            ports.append(p)
        if len(ports) == count:
            return first, first + count - 1
    raise RuntimeError("no free passive range")


class HAProxy:
    """HAProxy in TCP mode, from a configuration written to the test's folder."""

    def __init__(self, root, sections):
        self.cfg = root / "haproxy.cfg"
        self.cfg.write_text(
            "global\n  maxconn 200\n\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
            "  timeout server 60s\n  timeout check 2s\n\n" + sections)
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr + sections
        self.log = root / "haproxy.log"
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def wait(self, host, port):
        deadline = time.time() + 10
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                connect(host, port, source=PROBE if host.startswith("127.") else None).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"haproxy did not listen: {self.log.read_text()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def haproxy_factory(tmp_path):
    started = []

    def make(sections):
        h = HAProxy(tmp_path, sections)
        started.append(h)
        return h
    yield make
    for h in started:
        h.stop()


def tcp_pair(name, bind, server, send="send-proxy-v2", extra=""):
    return (f"frontend {name}\n  bind {bind}\n  default_backend {name}\n\n"
            f"backend {name}\n{extra}  server node1 {server} {send}\n\n")


def ssh_through(front_port, source, user="alice", password=PASSWORD):
    """A paramiko client connected through the balancer from `source`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", front_port))
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=front_port, username=user, password=password, sock=sock,
                   allow_agent=False, look_for_keys=False, timeout=10)
    return client


def test_sftp_ftps_and_https_through_haproxy_are_recorded_under_the_clients_address(
        server, haproxy_factory):
    home = server.add_account("alice", password=PASSWORD)
    passive = passive_range()
    behind_balancer(server, passive=passive)
    start(server)
    home.mkdir(parents=True, exist_ok=True)
    ssh_front, https_front, https_v1_front, ftps_front, implicit_front = (free_port() for _ in range(5))
    h = haproxy_factory(
        tcp_pair("ssh", f"127.0.0.1:{ssh_front}", f"127.0.0.1:{server.port}")
        + tcp_pair("https", f"127.0.0.1:{https_front}", f"127.0.0.1:{server.https_port}")
        + tcp_pair("https_v1", f"127.0.0.1:{https_v1_front}", f"127.0.0.1:{server.https_port}",
                   send="send-proxy")
        # An IPv6 client behind a balancer that reaches the node over IPv4.
        + tcp_pair("ftps", f"[::1]:{ftps_front}", f"127.0.0.1:{server.ftps_port}")
        + tcp_pair("implicit", f"[::1]:{implicit_front}", f"127.0.0.1:{server.implicit_port}")
        # The passive range, port for port, each data connection with its own header.
        + tcp_pair("ftp_passive", f"[::1]:{passive[0]}-{passive[1]}", "127.0.0.1"))
    h.wait("127.0.0.1", ssh_front)

    # SFTP with OpenSSH from 127.0.0.2.
    src = random_file(server.root / "up.bin", 200_000)
    batch = server.root / "batch"
    batch.write_text(f"put {src} up.bin\nls\n")
    result = subprocess.run(
        ["sftp", *server.ssh_opts(), "-o", "BindAddress=127.0.0.2", "-P", str(ssh_front),
         "-b", str(batch), "alice@127.0.0.1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sha256(home / "up.bin") == sha256(src)

    # Explicit FTPS (AUTH TLS, PROT P, session reuse) and implicit FTPS from ::1, passive
    # data through the balancer.
    ftps = ReusingFTP_TLS(context=tls_client_context())
    ftps.connect("::1", ftps_front, timeout=15)
    ftps.login("alice", PASSWORD)
    ftps.prot_p()
    with open(src, "rb") as f:
        ftps.storbinary("STOR ftps.bin", f)
    assert "up.bin" in ftps.nlst()
    ftps.quit()
    assert sha256(home / "ftps.bin") == sha256(src)
    implicit = ImplicitFTP_TLS(context=tls_client_context())
    implicit.connect("::1", implicit_front, timeout=15)
    implicit.login("alice", PASSWORD)
    implicit.prot_p()
    got = bytearray()
    implicit.retrbinary("RETR ftps.bin", got.extend)
    implicit.quit()
    assert bytes(got) == src.read_bytes()

    # HTTPS with curl from 127.0.0.2 (PROXY v2) and 127.0.0.3 (PROXY v1).
    for front, source in ((https_front, "127.0.0.2"), (https_v1_front, "127.0.0.3")):
        out = subprocess.run(
            ["curl", "-sSk", "--interface", source, "-u", f"alice:{PASSWORD}",
             f"https://127.0.0.1:{front}/api/v1/files/up.bin", "-o", str(server.root / "dl.bin")],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert sha256(server.root / "dl.bin") == sha256(src)

    def hosts(service, name):
        return {host_of(e["remote"]) for e in server.events()
                if e.get("service") == service and e["name"] == name and e.get("remote")}

    deadline = time.time() + 10
    while time.time() < deadline and hosts("https", "connection.closed") != {"127.0.0.2", "127.0.0.3"}:
        time.sleep(0.2)
    assert hosts("ssh", "login.succeeded") == {"127.0.0.2"}
    assert hosts("ssh", "connection.opened") == {"127.0.0.2", PROBE}
    assert hosts("ftp", "login.succeeded") == {"::1"}
    assert hosts("ftps", "login.succeeded") == {"::1"}
    # The second request's Basic login is remembered, so only its connection is recorded.
    assert hosts("https", "connection.opened") == {"127.0.0.2", "127.0.0.3"}
    assert hosts("https", "login.succeeded") == {"127.0.0.2"}
    uploads = [e for e in server.events() if e["name"] == "upload.finished"]
    assert {(e["service"], host_of(e["remote"])) for e in uploads} == {("ssh", "127.0.0.2"), ("ftp", "::1")}
    # HAProxy's own address appears in no record of these services.
    assert not [e for e in server.events() if e.get("service") in ("ftp", "ftps", "https")
                and e.get("remote") and host_of(e["remote"]) == "127.0.0.1"]


def test_two_nodes_each_with_its_own_passive_range_behind_one_haproxy(server, tmp_path, haproxy_factory):
    """The layout docs/clustering.md gives for FTPS: control connections balanced over the
    nodes, each node's passive range forwarded to it alone, health checked on /ready."""
    other = WharfServer(tmp_path / "node2")
    nodes = [server, other]
    fronts = {}
    try:
        for node in nodes:
            node.add_account("alice", password=PASSWORD)
            node.passive = passive_range()
            node.health = free_port()
            behind_balancer(node, services=("ftp",), passive=node.passive,
                            extra=f'\n[health]\nlisten = "127.0.0.1:{node.health}"\n')
            start(node)
            (node.homes / "alice").mkdir(parents=True, exist_ok=True)
        control = free_port()
        sections = (
            f"frontend ftps\n  bind [::1]:{control}\n  default_backend ftps\n\n"
            "backend ftps\n  balance roundrobin\n  option httpchk GET /ready\n"
            "  http-check expect status 200\n")
        for n, node in enumerate(nodes, 1):
            sections += (f"  server node{n} 127.0.0.1:{node.ftps_port} send-proxy-v2 "
                         f"check port {node.health} inter 500ms fall 2 rise 1\n")
        sections += "\n"
        for n, node in enumerate(nodes, 1):
            sections += tcp_pair(f"ftp_passive_node{n}", f"[::1]:{node.passive[0]}-{node.passive[1]}",
                                 "127.0.0.1")
        h = haproxy_factory(sections)
        h.wait("::1", control)
        # Round robin: consecutive sessions land on both nodes, and every passive
        # transfer reaches the node that holds its control connection.
        for i in range(4):
            ftps = ReusingFTP_TLS(context=tls_client_context())
            ftps.connect("::1", control, timeout=15)
            ftps.login("alice", PASSWORD)
            ftps.prot_p()
            ftps.storbinary(f"STOR f{i}.txt", io.BytesIO(b"x" * 1000))
            assert f"f{i}.txt" in ftps.nlst()
            ftps.quit()
        for node in nodes:
            assert list((node.homes / "alice").glob("f*.txt")), "a node was never used"
            uploads = [e for e in node.events() if e["name"] == "upload.finished"]
            assert uploads and {host_of(e["remote"]) for e in uploads} == {"::1"}
    finally:
        other.stop()


def test_a_ban_on_the_real_client_holds_through_the_balancer(server, haproxy_factory):
    server.add_account("alice", password=PASSWORD)
    behind_balancer(server, services=("ssh",), extra="\n[ban]\nthreshold = 4\nwindow = 60\nban_time = 60\n")
    start(server)
    front = free_port()
    h = haproxy_factory(tcp_pair("ssh", f"127.0.0.1:{front}", f"127.0.0.1:{server.port}"))
    h.wait("127.0.0.1", front)
    # Two unknown accounts (2 + 2) from 127.0.0.2 reach the threshold.
    for _ in range(2):
        with pytest.raises(paramiko.AuthenticationException):
            ssh_through(front, "127.0.0.2", user="nobody", password="guess")
    ban = server.wait_event("ban.added")
    assert ban["attrs"]["network"] == "127.0.0.2/32"
    # The banned client is closed before the SSH banner, through the balancer too; another
    # client of the same balancer is served.
    deadline = time.time() + 10
    while time.time() < deadline:
        with connect("127.0.0.1", front, source="127.0.0.2") as s:
            if greeting(s) == b"":
                break
        time.sleep(0.2)
    else:
        raise AssertionError("the banned client was still served")
    with connect("127.0.0.1", front, source="127.0.0.3") as s:
        assert greeting(s).startswith(b"SSH-2.0-")
    ssh_through(front, "127.0.0.3").close()
    banned = refusals(server, "banned")
    assert banned and {host_of(e["remote"]) for e in banned} == {"127.0.0.2"}


def v2_header(source, dest, command=0x21):
    """A PROXY v2 header naming `source` (ip, port) connecting to `dest`."""
    s_ip, s_port = source
    d_ip, d_port = dest
    if ":" in s_ip:
        family = 0x21
        block = socket.inet_pton(socket.AF_INET6, s_ip) + socket.inet_pton(socket.AF_INET6, d_ip)
    else:
        family = 0x11
        block = socket.inet_aton(s_ip) + socket.inet_aton(d_ip)
    block += struct.pack("!HH", s_port, d_port)
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(block)) + block


def refusals(server, cause):
    return [e for e in server.events()
            if e["name"] == "connection.refused" and e["attrs"].get("cause") == cause]


def test_raw_headers_refused_recorded_split_local_and_passive_data(server):
    server.add_account("alice", password=PASSWORD)
    home = server.homes / "alice"
    balancers = '["127.0.0.0/24"]'
    ftp_port = server.add_ftp_service(extra=f"proxy_protocol = true\nproxy_from = {balancers}\n")
    behind_balancer(server, services=("ssh", "https"), proxy_from=balancers)
    start(server)
    home.mkdir(parents=True, exist_ok=True)
    (home / "hello.txt").write_text("hello\n")
    ssh = server.port

    # A listed balancer that sends nothing at all: FTP waits for a header, not the greeting.
    silent = connect("127.0.0.1", ftp_port)

    # No header (an SSH client straight in), a malformed one, oversized ones: closed
    # without a banner. Each from its own balancer address, so each is recorded (refusals
    # of one service, network and cause are thinned out).
    for n, first in enumerate((b"SSH-2.0-OpenSSH_9.6\r\n", b"PROXY TCP4 bogus\r\n",
                               b"PROXY TCP6 " + b"1" * 150 + b"\r\n",
                               V2_SIGNATURE + b"\x21\x11\xff\xff")):
        with connect("127.0.0.1", ssh, source=f"127.0.0.{11 + n}") as s:
            s.sendall(first)
            assert greeting(s) == b"", first
    # A TLS ClientHello straight to HTTPS: no handshake.
    with connect("127.0.0.1", server.https_port, source="127.0.0.15") as s:
        s.sendall(b"\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03")
        assert greeting(s) == b""
    # A valid header from an address that is not a listed balancer.
    with connect("127.0.0.1", ssh, source="127.0.1.5") as s:
        s.sendall(b"PROXY TCP4 203.0.113.5 127.0.0.1 4000 22\r\n")
        assert greeting(s) == b""
    with connect("127.0.0.1", ftp_port, source="127.0.1.5") as s:
        assert greeting(s).startswith(b"421 ")

    # A header split over several TCP segments, then the client's own banner.
    with connect("127.0.0.1", ssh) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        header = v2_header(("2001:db8::42", 50000), ("::1", 22))
        for piece in (header[:5], header[5:14], header[14:30], header[30:]):
            s.sendall(piece)
            time.sleep(0.05)
        s.sendall(b"SSH-2.0-test\r\n")
        assert greeting(s).startswith(b"SSH-2.0-Wharf")
    # v2 LOCAL (a balancer's own check) keeps the socket's address.
    with connect("127.0.0.1", ssh) as s:
        s.sendall(V2_SIGNATURE + b"\x20\x00\x00\x00")
        assert greeting(s).startswith(b"SSH-2.0-Wharf")

    # FTP: the control connection names 127.0.0.9 (v1); a passive data connection whose
    # header names another client is refused, one naming 127.0.0.9 is used.
    with connect("127.0.0.1", ftp_port) as c:
        c.sendall(b"PROXY TCP4 127.0.0.9 127.0.0.1 4000 21\r\n")
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")

        def cmd(line):
            c.sendall(line + b"\r\n")
            reply = f.readline()
            while reply[3:4] == b"-":
                reply = f.readline()
            return reply
        assert cmd(b"USER alice").startswith(b"331")
        assert cmd(b"PASS " + PASSWORD.encode()).startswith(b"230")
        for named, expected in (("198.51.100.1", b"425"), ("127.0.0.9", b"226")):
            epsv = cmd(b"EPSV")
            assert epsv.startswith(b"229"), epsv
            port = int(epsv.split(b"|||")[1].split(b"|")[0])
            with connect("127.0.0.1", port) as d:
                d.sendall(v2_header((named, 6000), ("127.0.0.1", port)))
                reply = cmd(b"RETR hello.txt")
                if reply.startswith(b"150"):
                    reply = f.readline()
                assert reply.startswith(expected), reply
                if expected == b"226":
                    assert d.recv(100) == b"hello\n"

    # The silent balancer connection was given up on after the header wait (5 s).
    silent.settimeout(10)
    assert silent.recv(200).startswith(b"421 no valid PROXY protocol header")
    silent.close()

    deadline = time.time() + 10
    while time.time() < deadline and len(refusals(server, "proxy-header")) < 7:
        time.sleep(0.2)
    header_refusals = refusals(server, "proxy-header")
    messages = " | ".join(e["message"] for e in header_refusals)
    for said in ("did not start with a PROXY protocol header", "malformed PROXY protocol v1",
                 "longer than its limit", "no PROXY protocol header within"):
        assert said in messages, messages
    assert {host_of(e["remote"]) for e in header_refusals} >= {f"127.0.0.{n}" for n in (1, 11, 12, 13, 14, 15)}
    assert {e["service"] for e in header_refusals} == {"ssh", "https", "ftp-plain"}
    untrusted = refusals(server, "proxy-untrusted")
    assert {(e["service"], host_of(e["remote"])) for e in untrusted} == {("ssh", "127.0.1.5"), ("ftp-plain", "127.0.1.5")}
    assert "not a load balancer listed in proxy_from" in untrusted[0]["message"]
    opened = {host_of(e["remote"]) for e in server.events()
              if e["name"] == "connection.opened" and e["service"] == "ssh"}
    assert opened == {"2001:db8::42", "127.0.0.1"}
    stolen = [e for e in server.events() if e["name"] == "protocol.error" and "198.51.100.1" in e.get("message", "")]
    assert stolen and host_of(stolen[0]["remote"]) == "127.0.0.9"
    downloads = [e for e in server.events() if e["name"] == "download.finished"]
    assert [host_of(e["remote"]) for e in downloads] == ["127.0.0.9"]


def test_proxy_protocol_without_balancers_is_refused_at_check(server):
    config = server.root / "wharf.toml"
    text = config.read_text().replace('name = "ssh"\n', 'name = "ssh"\nproxy_protocol = true\n', 1)
    text = text.replace('name = "https"\n', 'name = "https"\nproxy_from = ["127.0.0.1"]\n', 1)
    text = text.replace('name = "ftps"\n', 'name = "ftps"\nproxy_protocol = true\nproxy_from = ["10.0.0.0/33"]\n', 1)
    config.write_text(text)
    lines = text.splitlines()
    result = server.wharf("check-config")
    assert result.returncode == 1
    line = lines.index("proxy_protocol = true") + 1
    assert f"wharf.toml:{line}: service[0].proxy_protocol: list the load balancers" in result.stderr, result.stderr
    line = lines.index('proxy_from = ["127.0.0.1"]') + 1
    assert f"wharf.toml:{line}: service[3].proxy_from: proxy_from is used only with proxy_protocol = true" in result.stderr
    assert 'service[2].proxy_from: "10.0.0.0/33" is not an IP address or network' in result.stderr


def probe(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_live_ready_and_draining_on_sigterm_seen_by_haproxy(server, haproxy_factory):
    health = free_port()
    behind_balancer(server, services=("ssh",),
                    extra=f'\n[health]\nlisten = "127.0.0.1:{health}"\ndrain_seconds = 4\n')
    start(server)
    assert probe(health, "/live") == (200, {"status": "live", "node": "wharf-1"})
    status, body = probe(health, "/ready")
    assert status == 200 and body["status"] == "ready" and body["store"] == "ok", body
    assert body["listening"] is True and body["draining"] is False
    assert probe(health, "/nothing")[0] == 404
    # Bounded: a request whose headers never end is cut.
    with connect("127.0.0.1", health) as s:
        s.sendall(b"GET /ready HTTP/1.1\r\nX: " + b"a" * 20000)
        s.settimeout(5)
        try:
            answer = s.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431") or answer.startswith(b"HTTP/1.1 400")

    # HAProxy checks /ready on the health port for the SSH backend.
    front = free_port()
    h = haproxy_factory(tcp_pair(
        "ssh", f"127.0.0.1:{front}", f"127.0.0.1:{server.port}",
        send=f"send-proxy-v2 check port {health} inter 200ms fall 1 rise 1",
        extra="  option httpchk GET /ready\n  http-check expect status 200\n"))
    h.wait("127.0.0.1", front)
    deadline = time.time() + 10
    while True:
        with connect("127.0.0.1", front, source="127.0.0.2") as s:
            if (greeting(s) or b"").startswith(b"SSH-2.0-"):
                break
        assert time.time() < deadline, "HAProxy never sent a client to the ready node"
        time.sleep(0.2)

    # SIGTERM: not ready at once, still serving, and the balancer stops sending clients.
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.time() + 3
    while probe(health, "/ready")[0] != 503:
        assert time.time() < deadline
        time.sleep(0.1)
    status, body = probe(health, "/ready")
    assert body["draining"] is True and body["status"] == "not ready"
    assert probe(health, "/live")[0] == 200
    with connect("127.0.0.1", server.port) as s:
        s.sendall(v2_header(("127.0.0.2", 7000), ("127.0.0.1", server.port)))
        assert greeting(s).startswith(b"SSH-2.0-")
    time.sleep(0.6)
    with connect("127.0.0.1", front, source="127.0.0.2") as s:
        assert not (greeting(s) or b"").startswith(b"SSH-2.0-")
    assert server.proc.poll() is None
    assert server.proc.wait(timeout=10) == 0
