"""Audit sinks: JSON-lines rotation and retention (still verifiable), syslog over UDP, TCP
and a unix socket with per-sink filters, standard output, and a sink that is down."""

import json
import re
import socket
import threading
import time

from conftest import free_port

PASSWORD = "sinks-test-password-1"
RFC5424 = re.compile(r'^<(\d+)>1 (\S+) (\S+) wharf (\d+) (\S+) \[meta sequenceId="(\d+)"\] (\{.*\})$')


def configure(server, text):
    config = (server.root / "wharf.toml").read_text()
    (server.root / "wharf.toml").write_text(config.replace("[audit]\n", "[audit]\n" + text, 1))


def append(server, text):
    with open(server.root / "wharf.toml", "a") as f:
        f.write(text)


def segments(server):
    data = server.root / "wharf-data"
    return sorted(p.name for p in data.iterdir() if p.name.startswith("audit.jsonl"))


def busy_session(server, count):
    server.sftp("acme", "".join(f"mkdir d{i}\nrmdir d{i}\n" for i in range(count)))


def test_rotation_keeps_the_configured_number_and_stays_verifiable(server):
    configure(server, "rotate_size = 6000\nkeep = 2\n")
    server.add_account("acme", password=PASSWORD)
    server.start()
    busy_session(server, 60)
    server.wait_event("session.ended")
    names = segments(server)
    assert "audit.jsonl" in names
    rotated = [n for n in names if n != "audit.jsonl"]
    assert len(rotated) == 2, names
    assert all(re.fullmatch(r"audit\.jsonl\.\d{12}", n) for n in rotated)
    for name in names:
        assert (server.root / "wharf-data" / name).stat().st_size < 6000 + 4096
    ok = server.wharf("audit", "verify")
    assert ok.returncode == 0, ok.stderr
    # The rotated copy starts where retention left it, and still follows the store.
    first = json.loads((server.root / "wharf-data" / rotated[0]).read_text().splitlines()[0])
    assert first["seq"] > 1
    # A record changed inside a rotated segment is named.
    victim = server.root / "wharf-data" / rotated[1]
    lines = victim.read_text().splitlines()
    record = json.loads(lines[2])
    record["account"] = "mallory"
    lines[2] = json.dumps(record, separators=(",", ":"))
    victim.write_text("\n".join(lines) + "\n")
    broken = server.wharf("audit", "verify")
    assert broken.returncode == 1
    assert f"record {record['seq']} in" in broken.stderr and "does not match its hash" in broken.stderr


def test_rotation_by_age(server):
    configure(server, "rotate_age = 2\n")
    server.add_account("acme", password=PASSWORD)
    server.start()
    busy_session(server, 2)
    before = segments(server)
    time.sleep(2.5)
    busy_session(server, 2)
    after = segments(server)
    assert len(after) == len(before) + 1, (before, after)
    assert server.wharf("audit", "verify").returncode == 0


class Collector:
    """Receives syslog messages over UDP, TCP (octet counting) or a unix datagram socket."""

    def __init__(self, kind, where):
        self.messages = []
        self.kind = kind
        if kind == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(where)
        elif kind == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(str(where))
        else:
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            self.sock.bind(where)
            self.sock.listen()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        if self.kind != "tcp":
            while True:
                data = self.sock.recv(70000)
                self.messages.append(data.decode())
        conn, _ = self.sock.accept()
        buffer = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while b" " in buffer:
                length, rest = buffer.split(b" ", 1)
                if len(rest) < int(length):
                    break
                self.messages.append(rest[: int(length)].decode())
                buffer = rest[int(length):]


def parsed(messages):
    out = []
    for m in messages:
        match = RFC5424.match(m)
        assert match, m
        pri, stamp, host, pid, msgid, seq, body = match.groups()
        record = json.loads(body)
        assert record["name"] == msgid and record["seq"] == int(seq) and record["time"] == stamp
        assert host == "wharf-1"
        out.append((int(pri), record))
    return out


def test_syslog_sinks_with_filters_and_stdout(server):
    udp_port, tcp_port = free_port(), free_port()
    unix_path = server.root / "log.sock"
    udp = Collector("udp", ("127.0.0.1", udp_port))
    tcp = Collector("tcp", ("::1", tcp_port))
    unix = Collector("unix", unix_path)
    append(server, f"""
[[audit.sink]]
type = "syslog"
url = "udp://127.0.0.1:{udp_port}"
events = ["2xxxx"]
outcome = "failure"

[[audit.sink]]
type = "syslog"
url = "tcp://[::1]:{tcp_port}"
facility = "auth"
events = ["upload.finished", "login.succeeded"]

[[audit.sink]]
type = "syslog"
url = "unix://{unix_path}"
accounts = ["acme"]

[[audit.sink]]
type = "stdout"
events = ["server.started"]

[[audit.sink]]
type = "syslog"
url = "tcp://127.0.0.1:{free_port()}"
""")
    server.add_account("acme", password=PASSWORD)
    server.start()
    local = server.root / "report.csv"
    local.write_bytes(b"a,b\n")
    server.sftp("acme", f"put {local} report.csv\n")
    # A failed login over FTPS.
    import ftplib
    from ftp_clients import ReusingFTP_TLS, tls_client_context
    client = ReusingFTP_TLS(context=tls_client_context())
    client.connect("127.0.0.1", server.ftps_port, timeout=10)
    try:
        client.login("acme", "wrong-password-here")
    except ftplib.error_perm:
        pass
    client.close()
    server.wait_event("login.failed")
    server.wait_event("session.ended")
    time.sleep(1)

    store = {e["seq"]: e for e in server.events()}
    failures = parsed(udp.messages)
    assert failures and all(r["id"] // 10000 == 2 and r["outcome"] == "failure" for _, r in failures)
    assert any(r["name"] == "login.failed" for _, r in failures)
    assert all(pri == 16 * 8 + 4 for pri, _ in failures)  # local0, warning

    chosen = parsed(tcp.messages)
    assert sorted(r["name"] for _, r in chosen) == ["login.succeeded", "upload.finished"]
    assert all(pri == 4 * 8 + 6 for pri, _ in chosen)  # auth, info

    mine = parsed(unix.messages)
    assert mine and all(r.get("account") == "acme" for _, r in mine)
    # Every copy is the store's record, hash included: a third witness of the chain.
    for _, record in failures + chosen + mine:
        assert store[record["seq"]]["hash"] == record["hash"]
    names = {r["name"] for _, r in mine}
    assert {"login.succeeded", "upload.finished", "login.failed"} <= names

    stdout = [json.loads(l) for l in server.log.read_text().splitlines() if l.startswith("{")]
    assert [r["name"] for r in stdout] == ["server.started"]
    # The unreachable TCP sink held nothing up.
    assert server.wharf("audit", "verify").returncode == 0


def test_sink_configuration_errors(server):
    append(server, """
[[audit.sink]]
type = "syslog"
url = "udp://localhost"

[[audit.sink]]
type = "jsonl"
events = ["login.faild"]
path = "x.jsonl"

[[audit.sink]]
type = "carrier-pigeon"
""")
    result = server.wharf("check-config")
    assert result.returncode != 0
    assert "audit.sink[0].url" in result.stderr
    assert "audit.sink[1].events" in result.stderr and "login.faild" in result.stderr
    assert "audit.sink[2].type" in result.stderr


def test_a_witness_finds_both_local_copies_cut_alike(server):
    """Cutting the store and the JSON-lines file at the same record leaves a consistent
    chain; a copy sent elsewhere (here a filtered JSON-lines sink outside the data folder)
    still names what was cut."""
    import sqlite3
    remote = server.root / "elsewhere" / "witness.jsonl"
    append(server, f"""
[[audit.sink]]
type = "jsonl"
path = "{remote}"
events = ["3xxxx"]
""")
    server.add_account("acme", password=PASSWORD)
    server.start()
    busy_session(server, 3)
    server.wait_event("session.ended")
    server.stop()
    assert server.wharf("audit", "verify", "--witness", str(remote)).returncode == 0
    records = [json.loads(l) for l in remote.read_text().splitlines()]
    assert records and all(r["id"] // 10000 == 3 for r in records)
    cut_at = records[-2]["seq"]
    db = sqlite3.connect(server.root / "wharf-data" / "wharf.db")
    db.execute("DELETE FROM events WHERE seq >= ?", (cut_at,))
    db.commit()
    db.close()
    local = server.root / "wharf-data" / "audit.jsonl"
    kept = [l for l in local.read_text().splitlines() if json.loads(l)["seq"] < cut_at]
    local.write_text("\n".join(kept) + "\n")
    alone = server.wharf("audit", "verify")
    assert alone.returncode == 0, alone.stderr  # the two local copies agree
    found = server.wharf("audit", "verify", "--witness", str(remote))
    assert found.returncode == 1
    assert f"record {cut_at}:" in found.stderr and "cut off" in found.stderr
