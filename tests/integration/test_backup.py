"""Backups and restores, proven by restoring: `wharf backup` while the server runs, `wharf
backup verify`, `wharf restore --into` a new folder (SQLite and PostgreSQL), the schedule of
`[backup]`, and archives that were altered. The restored node is driven by OpenSSH's sftp
with strict host key checking against the original's known_hosts, by ftplib with a one-time
code, and by a handler that checks signatures with the restored key."""

import json
import os
import subprocess
import threading
import time

from conftest import BIN, WharfServer, random_file
from logins import ftps_login
from test_handlers import make_key, sign, wait_for
from test_totp import fresh_code

PASSWORD = "correct horse battery staple"
AGE_MAGIC = b"age-encryption.org/v1"


def wharf(*args, env=None):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def strict_sftp(server, known_hosts, script, check_new=False):
    """OpenSSH sftp that checks the server's host key against `known_hosts` under one alias,
    so the original and the restored node (on other ports) must show the same key."""
    batch = server.root / f"batch-{time.time_ns()}"
    batch.write_text(script)
    cmd = ["sftp", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "HostKeyAlias=wharf-node",
           "-o", f"StrictHostKeyChecking={'accept-new' if check_new else 'yes'}",
           "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i", str(server.key),
           "-P", str(server.port), "-b", str(batch), "alice@127.0.0.1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=server.root)


def configure(server, text):
    with open(server.root / "wharf.toml", "a") as f:
        f.write(text)


def test_a_node_comes_back_from_its_encrypted_backup(tmp_path):
    a = WharfServer(tmp_path / "a")
    b = None
    try:
        private, public = make_key(tmp_path)
        key_in_folder = a.root / "wharf-data" / "keys" / "partner.pub.pem"
        key_in_folder.write_bytes(public.read_bytes())
        # A program outside the node's folder: the backup carries it by its absolute path.
        hooks = tmp_path / "hooks"
        hooks.mkdir()
        runs = tmp_path / "runs.txt"
        program = hooks / "record.sh"
        program.write_text(f'#!/bin/sh\necho "$1" >> {runs}\n')
        program.chmod(0o755)
        configure(a, f"""
[[handler]]
name = "partner-signatures"
on = ["upload.finished"]
path = "/in/*.csv"

[handler.verify-signature]
keys = ["wharf-data/keys/partner.pub.pem"]
wait = 4

[[handler]]
name = "record"
on = ["signature.valid"]

[handler.exec]
program = "{program}"
args = ["${{NAME}}"]
""")
        a.add_account("alice", password=PASSWORD)
        a.add_account("tara", password=PASSWORD)
        enrolled = json.loads(a.wharf("account", "totp", "enable", "tara", "--json", check=True).stdout)
        a.start()
        for name in ("a.csv", "b.csv"):
            (tmp_path / name).write_text(f"id,amount\n{name},1\n")
            sign(private, tmp_path / name, tmp_path / f"{name}.sig")
        known_hosts = tmp_path / "known_hosts"
        up = strict_sftp(a, known_hosts, f"mkdir in\nput {tmp_path}/a.csv in/a.csv\n"
                                         f"put {tmp_path}/a.csv.sig in/a.csv.sig\n", check_new=True)
        assert up.returncode == 0, up.stderr
        a.wait_event("signature.valid", path="/in/a.csv", timeout=20)
        wait_for(lambda: runs.exists() and "a.csv" in runs.read_text(), what="the program's first run")

        archive = tmp_path / "node.tar.age"
        secret = {"WHARF_BACKUP_PASSPHRASE": "a long passphrase for the vault"}
        made = wharf("--config", a.root / "wharf.toml", "backup", archive,
                     "--passphrase", "env:WHARF_BACKUP_PASSPHRASE", env=secret)
        assert made.returncode == 0, made.stderr
        assert archive.read_bytes().startswith(AGE_MAGIC)
        assert "a long passphrase" not in made.stdout + made.stderr
        listed = made.stdout
        for carried in ("wharf.toml", "wharf-data/keys/ssh_host_ed25519_key", "wharf-data/tls/key.pem",
                        "wharf-data/keys/partner.pub.pem", str(program)):
            assert f"  {carried}\n" in listed, listed
        recorded = a.wait_event("backup.made")
        assert recorded["attrs"]["encrypted"] == "true" and recorded["attrs"]["trigger"] == "command"

        without = wharf("backup", "verify", archive)
        assert without.returncode != 0 and "encrypted" in without.stderr
        wrong = wharf("backup", "verify", archive, "--passphrase", "env:WRONG", env={"WRONG": "nope"})
        assert wrong.returncode != 0 and "cannot decrypt" in wrong.stderr
        checked = wharf("backup", "verify", archive, "--passphrase", "env:WHARF_BACKUP_PASSPHRASE",
                        env=secret)
        assert checked.returncode == 0, checked.stderr
        assert "chain verifies" in checked.stdout and "BROKEN" not in checked.stdout

        into = tmp_path / "b"
        restored = wharf("restore", archive, "--into", into, "--passphrase",
                         "env:WHARF_BACKUP_PASSPHRASE", env=secret)
        assert restored.returncode == 0, restored.stderr
        assert (into / "wharf-data" / "keys" / "partner.pub.pem").read_bytes() == public.read_bytes()
        assert oct((into / "wharf-data" / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"

        b = WharfServer.restored(into, a)
        b.start()
        # The same host key: known_hosts written against the original still matches.
        up = strict_sftp(b, known_hosts, f"put {tmp_path}/b.csv in/b.csv\nput {tmp_path}/b.csv.sig in/b.csv.sig\n")
        assert up.returncode == 0, up.stderr
        b.wait_event("signature.valid", path="/in/b.csv", timeout=20)
        wait_for(lambda: "b.csv" in runs.read_text(), what="the program's run on the restored node")
        # The one-time code secret came back with the account.
        ftps_login(b, "tara", PASSWORD + fresh_code(enrolled["secret"], set())).quit()
        b.wait_event("login.succeeded", account="tara", protocol="ftps")
        verify = b.wharf("audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        back = b.wait_event("backup.restored")
        assert back["attrs"]["archive"] == str(archive)
        # The original's records up to the backup are in the restored trail.
        assert any(e["name"] == "signature.valid" and e.get("path") == "/in/a.csv" for e in b.events())
    finally:
        a.stop()
        if b:
            b.stop()


def test_an_altered_archive_is_refused_and_nothing_is_restored(server, tmp_path):
    server.add_account("alice", password=PASSWORD)
    server.start()
    archive = tmp_path / "plain.tar"
    server.wharf("backup", str(archive), check=True)
    assert wharf("backup", "verify", archive).returncode == 0

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    refused = wharf("restore", archive, "--into", busy)
    assert refused.returncode != 0 and "not empty" in refused.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]

    data = bytearray(archive.read_bytes())
    at = data.find(b"[server]")
    data[at + 1] ^= 0x20
    altered = tmp_path / "altered.tar"
    altered.write_bytes(bytes(data))
    checked = wharf("backup", "verify", altered)
    assert checked.returncode != 0 and "differs from the manifest" in checked.stderr, checked.stderr
    target = tmp_path / "target"
    refused = wharf("restore", altered, "--into", target)
    assert refused.returncode != 0 and "differs from the manifest" in refused.stderr
    assert list(target.iterdir()) == []

    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[: len(data) // 2])
    assert wharf("backup", "verify", cut).returncode != 0

    # --force writes over a folder in use.
    forced = wharf("restore", archive, "--into", busy, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (busy / "wharf.toml").exists() and (busy / "keep.txt").read_text() == "mine"


def test_a_backup_taken_during_uploads_holds_whole_uploads(server, tmp_path):
    server.add_account("alice", password=PASSWORD)
    server.start()
    sources = [random_file(tmp_path / "src" / f"u{i}.bin", 4 << 20) for i in range(20)]
    ended = {}

    def upload(i, path):
        server.sftp("alice", f"put {path} /u{i}.bin\n")
        ended[i] = time.time()

    threads = [threading.Thread(target=upload, args=(i, p)) for i, p in enumerate(sources)]
    for t in threads:
        t.start()
    wait_for(lambda: len(ended) >= 3, timeout=60, what="the first uploads")
    began = time.time()
    archive = tmp_path / "busy.tar"
    server.wharf("backup", str(archive), check=True)
    for t in threads:
        t.join(timeout=120)
    assert len(ended) == 20

    into = tmp_path / "r"
    restored = wharf("restore", archive, "--into", into)
    assert restored.returncode == 0, restored.stderr
    verify = wharf("--config", into / "wharf.toml", "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    out = wharf("--config", into / "wharf.toml", "events", "--json", "--limit", "100000").stdout
    trail = [json.loads(line) for line in out.splitlines() if line.strip()]
    started = {e["path"]: e["seq"] for e in trail if e["name"] == "upload.started"}
    finished = {e["path"]: e for e in trail if e["name"] == "upload.finished"}
    for i in range(20):
        path = f"/u{i}.bin"
        if ended[i] < began:
            # The client heard "done" before the backup began: its record is in it.
            assert path in finished, path
        if path in finished:
            assert path in started and started[path] < finished[path]["seq"], path
            assert finished[path]["bytes"] == 4 << 20


def test_scheduled_backups_keep_the_newest(server, tmp_path):
    server.add_account("alice", password=PASSWORD)
    configure(server, """
[backup]
folder = "wharf-data/backups"
interval = 5
keep = 2
""")
    server.start()
    wait_for(lambda: len([e for e in server.events() if e["name"] == "backup.made"]) >= 3,
             timeout=60, what="three scheduled backups")
    made = [e for e in server.events() if e["name"] == "backup.made"]
    assert all(e["attrs"]["trigger"] == "schedule" for e in made)
    folder = server.root / "wharf-data" / "backups"
    wait_for(lambda: len(list(folder.glob("wharf-backup-wharf-1-*.tar"))) == 2, timeout=10,
             what="the older archives removed")
    assert not list(folder.glob("*.partial"))
    newest = sorted(folder.glob("*.tar"))[-1]
    checked = wharf("backup", "verify", newest)
    assert checked.returncode == 0, checked.stderr


def test_a_store_moves_between_sqlite_and_postgresql_by_restoring(tmp_path, postgres):
    a = WharfServer(tmp_path / "a")
    nodes = [a]
    try:
        a.add_account("alice", password=PASSWORD)
        a.start()
        a.sftp("alice", "mkdir kept\n")
        archive = tmp_path / "sqlite.tar"
        a.wharf("backup", str(archive), check=True)

        database = postgres.database()
        restored = wharf("restore", archive, "--into", tmp_path / "p", "--store", database)
        assert restored.returncode == 0, restored.stderr
        assert f'url = "{database}"' in (tmp_path / "p" / "wharf.toml").read_text()
        p = WharfServer.restored(tmp_path / "p", a)
        nodes.append(p)
        p.start()
        assert "kept" in p.sftp("alice", "ls\n").stdout
        assert p.wharf("audit", "verify").returncode == 0
        p.wait_event("backup.restored")

        # Back from PostgreSQL: the store must be named, and SQLite is one choice.
        archive = tmp_path / "postgres.tar"
        p.wharf("backup", str(archive), check=True)
        refused = wharf("restore", archive, "--into", tmp_path / "q")
        assert refused.returncode != 0 and "PostgreSQL" in refused.stderr
        restored = wharf("restore", archive, "--into", tmp_path / "s", "--store", "sqlite:wharf-data/wharf.db")
        assert restored.returncode == 0, restored.stderr
        s = WharfServer.restored(tmp_path / "s", p)
        nodes.append(s)
        s.start()
        assert "kept" in s.sftp("alice", "ls\n").stdout
        verify = s.wharf("audit", "verify")
        assert verify.returncode == 0, verify.stdout
        assert len([e for e in s.events() if e["name"] == "backup.restored"]) == 2
    finally:
        for node in nodes:
            node.stop()


def rewrite(archive, out, manifest_change=None, contents=None):
    """A copy of a plain archive with entries replaced and the manifest's digests made to
    match, as anyone who can write a plain archive can do."""
    import hashlib
    import io
    import tarfile
    entries = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            entries[member.name] = (member, tar.extractfile(member).read())
    manifest = json.loads(entries.pop("manifest.json")[1])
    for name, data in (contents or {}).items():
        entries[name] = (entries[name][0], data)
    for f in manifest["files"]:
        entry = "outside" + f["path"] if f["path"].startswith("/") else "files/" + f["path"]
        data = entries[entry][1]
        f["size"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    store = entries["store.db"][1]
    manifest["store"]["size"], manifest["store"]["sha256"] = len(store), hashlib.sha256(store).hexdigest()
    if manifest_change:
        manifest_change(manifest)
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, (member, data) in entries.items():
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        text = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return out


def test_a_hostile_archive_writes_nothing_outside_its_folder(server, tmp_path):
    """A plain archive carries no authentication: rewritten by an attacker, its store URL
    and its configuration must still not reach files outside the restore's folder."""
    server.start()
    archive = tmp_path / "plain.tar"
    server.wharf("backup", str(archive), check=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    precious = victim / "precious.db"
    precious.write_text("keep me")
    log = victim / "log.jsonl"
    log.write_text('{"not": "a record"}\n')

    def store_elsewhere(manifest):
        manifest["store"]["url"] = "sqlite:../victim/precious.db"
    hostile = rewrite(archive, tmp_path / "store-url.tar", store_elsewhere)
    refused = wharf("restore", hostile, "--into", tmp_path / "r1")
    assert refused.returncode != 0 and "outside its folder" in refused.stderr, refused.stderr
    assert precious.read_text() == "keep me"
    assert not (tmp_path / "r1" / "wharf.toml").exists()

    config = (server.root / "wharf.toml").read_text().replace(
        'jsonl = "wharf-data/audit.jsonl"', f'jsonl = "{log}"')
    hostile = rewrite(archive, tmp_path / "jsonl.tar", contents={"files/wharf.toml": config.encode()})
    restored = wharf("restore", hostile, "--into", tmp_path / "r2")
    assert restored.returncode == 0, restored.stderr
    # The audit file the configuration names outside the folder is not the restore's to cut.
    assert log.read_text().startswith('{"not": "a record"}\n')

    def config_in_a_folder(manifest):
        manifest["config"] = "../wharf.toml"
    hostile = rewrite(archive, tmp_path / "config.tar", config_in_a_folder)
    for command in (["backup", "verify", hostile], ["restore", hostile, "--into", tmp_path / "r3"]):
        refused = wharf(*command)
        assert refused.returncode != 0 and "not a plain path" in refused.stderr, refused.stderr


def test_a_restore_never_replaces_a_running_nodes_store(server, tmp_path):
    server.add_account("alice", password=PASSWORD)
    server.start()
    archive = tmp_path / "self.tar"
    server.wharf("backup", str(archive), check=True)
    refused = wharf("restore", archive, "--into", server.root, "--force")
    assert refused.returncode != 0 and "running now" in refused.stderr, refused.stderr
    # The running node goes on with its own store.
    server.add_account("bob", password=PASSWORD)
    assert server.wharf("audit", "verify").returncode == 0


def test_the_backup_passphrase_file_is_never_carried(server, tmp_path):
    (server.root / "backup-passphrase").write_text("sealed with this\n")
    configure(server, """
[backup]
folder = "wharf-data/backups"
interval = 86400
passphrase = "file:backup-passphrase"
""")
    archive = tmp_path / "plain.tar"
    made = server.wharf("backup", str(archive), check=True)
    assert "backup-passphrase" not in made.stdout
    assert b"sealed with this" not in archive.read_bytes()
