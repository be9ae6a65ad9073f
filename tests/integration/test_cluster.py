"""Several `wharf serve` nodes on one PostgreSQL store (a throwaway server per test worker).

What one node writes to the store, every node reads: an account made through node A logs in
on node B, and both nodes' records land in the one audit trail, each naming its node."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import WharfServer, free_port, sha256


def test_an_account_made_on_a_logs_in_on_b(cluster, tmp_path):
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_account("alice", password="correct horse battery")
    a.start()
    b.start()

    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"shared storage, shared accounts\n" * 100)
    b.sftp("alice", f"put {payload} from-b.bin\n")
    a.sftp("alice", f"get from-b.bin {tmp_path / 'back.bin'}\n")
    assert sha256(tmp_path / "back.bin") == sha256(payload)

    # The record of the upload is B's, the record of the download A's, in the one trail
    # that either node's `wharf events` reads.
    uploaded = a.wait_event("upload.finished", account="alice")
    downloaded = b.wait_event("download.finished", account="alice")
    assert uploaded["node"] == "b"
    assert downloaded["node"] == "a"
    assert cluster.psql("SELECT count(*) FROM accounts WHERE name = 'alice'") == "1"


def test_a_second_node_init_changes_nothing_shared(cluster):
    a = cluster.node("a")
    groups_before = cluster.psql("SELECT name, home_template FROM groups")
    b = cluster.node("b")
    # The administrator was made once, by the first node, and its password printed there.
    assert "Password (shown once" in a.admin_output
    assert "Password (shown once" not in b.admin_output
    assert cluster.psql("SELECT count(*) FROM admins") == "1"
    assert cluster.psql("SELECT name, home_template FROM groups") == groups_before


def test_a_sqlite_store_copied_into_postgresql_arrives_whole(server, postgres, tmp_path):
    """`wharf store copy --to postgres://…` moves a single node's store: accounts with their
    second factor, groups, the administrator, bans and the audit trail with its numbers and
    hashes, so `wharf audit verify` passes on the copy and the accounts log in."""
    server.add_account("alice", password="correct horse battery")
    # A ban as the ban engine stores it (none is set off here: 192.0.2.0/24 is documentation).
    with sqlite3.connect(server.root / "wharf-data" / "wharf.db") as db:
        db.execute("INSERT INTO bans (network, banned_us, until_us, strikes, reason, node) "
                   "VALUES ('192.0.2.0/24', 1, 9000000000000000, 3, 'test', 'wharf-1')")
    server.start()
    payload = tmp_path / "p.txt"
    payload.write_text("before the move\n")
    server.sftp("alice", f"put {payload} before.txt\n")
    server.wait_event("upload.finished", account="alice")
    server.stop()
    before = server.events()

    url = postgres.database()
    out = server.wharf("store", "copy", "--to", url, check=True).stdout
    assert "events" in out and "set [store] url" in out
    # The source is untouched; a second copy into the same database is refused.
    again = server.wharf("store", "copy", "--to", url)
    assert again.returncode != 0 and "not empty" in again.stderr

    config = server.root / "wharf.toml"
    config.write_text(config.read_text().replace('url = "sqlite:wharf-data/wharf.db"', f'url = "{url}"'))
    assert server.events() == before
    verified = server.wharf("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert postgres.psql(url, "SELECT count(*) FROM admins") == "1"
    assert "192.0.2.0/24" in server.wharf("ban", "list", check=True).stdout

    server.start()
    got = server.sftp("alice", "get before.txt -\n".replace("-", str(tmp_path / "back.txt")))
    assert (tmp_path / "back.txt").read_text() == "before the move\n", got.stdout
    server.wait_event("download.finished", account="alice")


def test_kill_9_of_a_node_mid_upload_leaves_no_partial_file_and_b_serves(cluster, tmp_path):
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_account("alice", password="correct horse battery")
    a.start()
    b.start()

    client = a.paramiko("alice")
    sftp = client.open_sftp()
    remote = sftp.open("big.bin", "wb")
    chunk = os.urandom(64 * 1024)
    for _ in range(32):  # 2 MiB written, the upload still open
        remote.write(chunk)
    remote.flush()
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(timeout=10)
    client.close()

    home = a.homes / "alice"
    assert not (home / "big.bin").exists(), sorted(p.name for p in home.iterdir())

    whole = tmp_path / "whole.bin"
    whole.write_bytes(chunk * 48)
    b.sftp("alice", f"put {whole} big.bin\n")
    assert sha256(home / "big.bin") == sha256(whole)
    b.wait_event("upload.finished", account="alice", path="/big.bin")


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def test_the_store_over_tls_checks_the_servers_certificate(postgres, tmp_path):
    """`sslmode=verify-full` with `[store] ca_file`: the node talks to PostgreSQL over TLS
    (rustls) and refuses a server whose certificate its CA did not sign."""
    pki = tmp_path / "pki"
    pki.mkdir()
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Store CA", cwd=pki)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "other.key", "-out", "other.pem", "-days", "2", "-subj", "/CN=Other CA", cwd=pki)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=pki)
    (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=pki)
    # The server's own copies, readable by the PostgreSQL user only.
    for name in ("server.pem", "server.key"):
        target = Path(postgres.dir) / f"tls-{name}"
        shutil.copy(pki / name, target)
        os.chmod(target, 0o600)
        if os.getuid() == 0:
            shutil.chown(target, "postgres")
    admin = f"{postgres.url}/postgres"
    postgres.psql(admin, f"ALTER SYSTEM SET ssl_cert_file = '{postgres.dir}/tls-server.pem'")
    postgres.psql(admin, f"ALTER SYSTEM SET ssl_key_file = '{postgres.dir}/tls-server.key'")
    postgres.psql(admin, "ALTER SYSTEM SET ssl = on")
    postgres.psql(admin, "SELECT pg_reload_conf()")

    database = postgres.database()
    node = WharfServer(tmp_path / "node", init_args=("--store", database, "--node", "tls"))
    config = node.root / "wharf.toml"
    plain = config.read_text()
    config.write_text(plain.replace(f'url = "{database}"', f'url = "{database}?sslmode=verify-full"\nca_file = "{pki / "ca.pem"}"'))
    listed = node.wharf("account", "list")
    assert listed.returncode == 0, listed.stderr
    # verify-full cannot fall back to plain text: this worked over TLS, checked.

    # Another CA: the server is not trusted, and the message says why.
    config.write_text(plain.replace(f'url = "{database}"', f'url = "{database}?sslmode=verify-full"\nca_file = "{pki / "other.pem"}"'))
    refused = node.wharf("account", "list")
    assert refused.returncode != 0
    assert "127.0.0.1" in refused.stderr and "certificate" in refused.stderr.lower(), refused.stderr
    postgres.psql(admin, "ALTER SYSTEM RESET ssl")
    postgres.psql(admin, "SELECT pg_reload_conf()")


def test_a_store_password_is_never_written_or_printed(server):
    config = server.root / "wharf.toml"
    default = config.read_text()
    config.write_text(default.replace('url = "sqlite:wharf-data/wharf.db"',
                                      'url = "postgres://wharf:hunter2@127.0.0.1:5432/wharf"'))
    out = server.wharf("check-config")
    assert out.returncode != 0
    assert "hunter2" not in out.stdout + out.stderr
    assert "store.url" in out.stderr and "env:NAME" in out.stderr, out.stderr
    assert "wharf.toml:" in out.stderr, out.stderr

    config.write_text(default.replace('url = "sqlite:wharf-data/wharf.db"',
                                      'url = "postgres://wharf@127.0.0.1:5432/wharf"\npassword = "hunter2"'))
    out = server.wharf("check-config")
    assert out.returncode != 0
    assert "store.password" in out.stderr and "never literally" in out.stderr, out.stderr
    assert "hunter2" not in out.stdout + out.stderr


def _probe(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_node_whose_store_is_gone_says_not_ready_and_comes_back(cluster):
    """The balancer's readiness probe follows the shared store: PostgreSQL stopped, the node
    answers 503 naming the store (still live); PostgreSQL back, ready again, no restart."""
    a = cluster.node("a")
    health = free_port()
    with open(a.root / "wharf.toml", "a") as f:
        f.write(f'\n[health]\nlisten = "127.0.0.1:{health}"\n')
    a.start()
    assert _probe(health, "/ready")[0] == 200
    cluster.postgres.pause()
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            status, body = _probe(health, "/ready")
            if status == 503:
                break
            time.sleep(0.3)
        assert status == 503 and body["store"] != "ok", body
        assert _probe(health, "/live")[0] == 200
    finally:
        cluster.postgres.resume()
    deadline = time.time() + 20
    while time.time() < deadline and _probe(health, "/ready")[0] != 200:
        time.sleep(0.3)
    assert _probe(health, "/ready")[0] == 200
