"""The command line: first run, check-config, accounts and groups, apply/export, events."""

import json
import sqlite3
import subprocess

from conftest import BIN


def test_first_run_creates_everything(tmp_path):
    result = subprocess.run([str(BIN), "init", str(tmp_path / "node")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "node" / "wharf-data"
    for rel in ["keys/ssh_host_ed25519_key", "keys/ssh_host_ecdsa_key", "tls/certificate.pem", "tls/key.pem", "wharf.db"]:
        assert (data / rel).exists(), rel
    assert oct((data / "keys/ssh_host_ed25519_key").stat().st_mode & 0o777) == "0o600"
    assert oct(data.stat().st_mode & 0o777) == "0o700"
    assert "Password (shown once" in result.stderr
    password = result.stderr.split("hash): ")[1].split()[0]
    db = sqlite3.connect(data / "wharf.db")
    (stored,) = db.execute("SELECT password_hash FROM admins WHERE name='admin'").fetchone()
    assert stored.startswith("$argon2id$") and password not in stored
    again = subprocess.run([str(BIN), "init", str(tmp_path / "node")], capture_output=True, text=True)
    assert again.returncode != 0 and "already exists" in again.stderr
    check = subprocess.run([str(BIN), "--config", str(tmp_path / "node" / "wharf.toml"), "check-config"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_check_config_names_file_line_and_key(server):
    config = server.root / "wharf.toml"
    text = config.read_text()
    config.write_text(text.replace("max_auth_tries = 6", "max_auth_tries = 6\nmax_auth_triez = 3"))
    r = server.wharf("check-config")
    assert r.returncode == 1
    line = [i + 1 for i, l in enumerate(config.read_text().splitlines()) if "max_auth_triez" in l][0]
    assert f"wharf.toml:{line}:" in r.stderr and "max_auth_triez" in r.stderr
    config.write_text(text.replace('address = ["127.0.0.1", "::1"]', 'address = ["127.0.0.1", "example.com"]'))
    r = server.wharf("check-config")
    line = [i + 1 for i, l in enumerate(config.read_text().splitlines()) if "example.com" in l][0]
    assert r.returncode == 1 and f"wharf.toml:{line}: service[0].address:" in r.stderr
    config.write_text(text.replace('# ciphers = [', 'ciphers = ["aes128-cbc"]\n# ciphers = ['))
    r = server.wharf("check-config")
    assert r.returncode == 1 and "service[0].ciphers" in r.stderr and "aes128-cbc" in r.stderr
    config.write_text(text.replace('type = "ssh"', 'type = "telnet"'))
    r = server.wharf("check-config")
    assert r.returncode == 1 and "service[0].type" in r.stderr
    # Every command refuses a broken configuration the same way, without a panic.
    r = server.wharf("account", "list")
    assert r.returncode == 1 and "panicked" not in r.stderr and "service[0].type" in r.stderr


def test_accounts_and_groups(server):
    server.wharf("group", "add", "ops", "--home-template", "/srv/wharf/${USER}", "--allow", "/**=list,read",
                 "--protocols", "sftp", check=True)
    server.add_account("erin", password="plum-orchard-51", groups=["ops"])
    listed = server.wharf("account", "list", "--json", check=True).stdout
    erin = json.loads(listed.splitlines()[0])
    assert erin["name"] == "erin" and erin["groups"] == ["ops"] and erin["password"] is True
    assert "argon2" not in listed
    shown = server.wharf("account", "show", "erin", check=True).stdout
    assert "SHA256:" in shown
    server.wharf("account", "set-password", "erin", input="new-river-stone-456\n", check=True)
    db = sqlite3.connect(server.root / "wharf-data" / "wharf.db")
    (hash_,) = db.execute("SELECT password_hash FROM accounts WHERE name='erin'").fetchone()
    assert hash_.startswith("$argon2id$") and "new-river-stone-456" not in hash_
    # [password_policy]: 12 characters, no common password, not the account name.
    for weak, why in [("short-pw", "shorter than 12 characters"),
                      ("Password1234", "it is on the list of common passwords"),
                      ("erin-is-my-password", "it contains the account name")]:
        r = server.wharf("account", "set-password", "erin", input=weak + "\n")
        assert r.returncode == 1 and f"password refused: {why}" in r.stderr, r.stderr
        r = server.wharf("account", "add", "gus", "--password-stdin", input=weak.replace("erin", "gus") + "\n")
        assert r.returncode == 1 and "password refused" in r.stderr, r.stderr
    with open(server.root / "wharf.toml", "a") as f:
        f.write("\n[password_policy]\nmin_length = 6\nrefuse_common = false\n")
    server.wharf("account", "set-password", "erin", input="Password1234\n", check=True)
    r = server.wharf("account", "set-password", "erin", input="erin-2026\n")
    assert r.returncode == 1 and "contains the account name" in r.stderr
    r = server.wharf("group", "remove", "ops")
    assert r.returncode == 1 and "erin" in r.stderr
    r = server.wharf("account", "add", "bad/name")
    assert r.returncode == 1 and "invalid name" in r.stderr
    r = server.wharf("account", "add", "frank", "--group", "nosuch")
    assert r.returncode == 1 and "does not exist" in r.stderr
    server.wharf("account", "remove", "erin", check=True)
    server.wharf("group", "remove", "ops", check=True)
    names = [e["name"] for e in server.events()]
    for expected in ["group.created", "account.created", "account.updated", "account.removed", "group.removed"]:
        assert expected in names
    assert "new-river-stone-456" not in (server.root / "wharf-data" / "audit.jsonl").read_text()


def test_apply_and_export_are_idempotent(server, monkeypatch):
    doc = server.root / "partners.toml"
    doc.write_text(f"""
[[group]]
name = "partners"
home_template = "{server.homes}/${{USER}}"
create_home = true
protocols = ["sftp", "scp"]

[[group.rule]]
pattern = 're:\\.(exe|js)$'
deny = ["write", "overwrite"]

[[group.rule]]
pattern = "/**"
allow = ["all"]

[[account]]
name = "acme"
groups = ["partners"]
password = "env:ACME_PASSWORD"
keys = ["{(server.key.parent / (server.key.name + '.pub')).read_text().strip()}"]
""")
    password = {"value": "acme-pw-1"}
    env_cmd = lambda *a: subprocess.run([str(BIN), "--config", str(server.root / "wharf.toml"), *a],
                                        capture_output=True, text=True,
                                        env={"ACME_PASSWORD": password["value"], "PATH": "/usr/bin:/bin"})
    # A new password must meet [password_policy]; the error names the file and account.
    weak = env_cmd("apply", str(doc))
    assert weak.returncode == 1
    assert "partners.toml: account acme: password refused: shorter than 12 characters" in weak.stderr
    # Nothing of a refused file is written, not even its valid entries.
    assert "partners" not in server.wharf("group", "list", check=True).stdout
    password["value"] = "granite-harbour-88"
    first = env_cmd("apply", str(doc))
    assert first.returncode == 0, first.stderr
    assert "2 created, 0 updated, 0 unchanged" in first.stdout
    second = env_cmd("apply", str(doc))
    assert "0 created, 0 updated, 2 unchanged" in second.stdout
    exported = server.wharf("export", check=True).stdout
    assert "acme" in exported and "$argon2id$" in exported and "granite-harbour-88" not in exported
    (server.root / "export.toml").write_text(exported)
    third = server.wharf("apply", str(server.root / "export.toml"), check=True)
    assert "0 created, 0 updated" in third.stdout
    # The imported account works.
    server.start()
    server.sftp("acme", "ls\n")
    literal = server.root / "literal.toml"
    literal.write_text('[[account]]\nname = "x"\npassword = "plain"\n')
    r = server.wharf("apply", str(literal))
    assert r.returncode == 1 and "env:NAME" in r.stderr


def test_events_filters_and_chain_verification(server):
    server.add_account("alice")
    server.add_account("bob")
    server.start()
    server.sftp("alice", "mkdir one\n")
    server.sftp("bob", "mkdir two\n")
    server.wait_event("folder.created", path="/two")
    only_alice = server.events("--account", "alice")
    assert only_alice and all(e["account"] == "alice" for e in only_alice)
    by_id = server.events("--id", "30022")
    assert {e["path"] for e in by_id} == {"/one", "/two"}
    assert server.events("--since", "1h")
    assert not server.events("--since", "2999-01-01T00:00:00Z")
    seqs = [e["seq"] for e in server.events()]
    assert seqs == list(range(1, len(seqs) + 1))
    human = server.wharf("events", "--id", "30022", check=True).stdout
    assert "folder.created" in human and "path=/one" in human
    # The JSON-lines file holds the same records.
    lines = (server.root / "wharf-data" / "audit.jsonl").read_text().splitlines()
    assert [json.loads(l)["seq"] for l in lines][: len(seqs)] == seqs
    ok = server.wharf("audit", "verify")
    assert ok.returncode == 0 and "intact" in ok.stdout
    server.stop()
    db = sqlite3.connect(server.root / "wharf-data" / "wharf.db")
    row = db.execute("SELECT seq, record_json FROM events WHERE name='folder.created' ORDER BY seq LIMIT 1").fetchone()
    tampered = json.loads(row[1])
    tampered["path"] = "/innocent"
    db.execute("UPDATE events SET record_json=? WHERE seq=?", (json.dumps(tampered), row[0]))
    db.commit()
    bad = server.wharf("audit", "verify")
    assert bad.returncode == 1 and f"record {row[0]}" in bad.stderr


def test_follow_prints_new_events(server):
    server.add_account("alice")
    server.start()
    follower = subprocess.Popen([str(BIN), "--config", str(server.root / "wharf.toml"), "events", "--follow", "--json", "--id", "30022"],
                                stdout=subprocess.PIPE, text=True)
    try:
        server.sftp("alice", "mkdir followed\n")
        line = follower.stdout.readline()
        assert json.loads(line)["path"] == "/followed"
    finally:
        follower.kill()


def test_serve_first_run_in_empty_folder(tmp_path):
    """`wharf serve` with no configuration creates one and serves on 2222 (skipped if taken)."""
    import socket
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 2222))
    except OSError:
        probe.close()
        import pytest
        pytest.skip("port 2222 in use")
    probe.close()
    proc = subprocess.Popen([str(BIN), "serve"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for _ in range(10):
            lines.append(proc.stderr.readline())
            if "listening" in lines[-1]:
                break
        text = "".join(lines)
        assert "Created" in text and "listening on [::]:2222" in text
        for host in ["127.0.0.1", "::1"]:
            with socket.create_connection((host, 2222), timeout=5) as s:
                assert s.recv(64).startswith(b"SSH-2.0-Wharf")
        assert (tmp_path / "wharf.toml").exists() and (tmp_path / "wharf-data" / "wharf.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_audit_verify_finds_each_tampering(server):
    """Changed, deleted, reordered and cut-off records are each found, in the store and in the
    JSON-lines copy; `wharf audit verify` names the first record that does not hold."""
    import shutil
    server.add_account("alice")
    server.start()
    for name in ["one", "two", "three", "four"]:
        server.sftp("alice", f"mkdir {name}\n")
    server.wait_event("folder.created", path="/four")
    server.stop()
    data = server.root / "wharf-data"
    backup = server.root / "backup"
    shutil.copytree(data, backup)
    ok = server.wharf("audit", "verify")
    assert ok.returncode == 0 and "the same in the store and" in ok.stdout, ok.stderr
    total = int(ok.stdout.split(":")[1].split()[0])
    jsonl = data / "audit.jsonl"

    def tampered(mutate):
        shutil.rmtree(data)
        shutil.copytree(backup, data)
        db = sqlite3.connect(data / "wharf.db")
        mutate(db, jsonl.read_text().splitlines())
        db.commit()
        db.close()
        result = server.wharf("audit", "verify")
        assert result.returncode == 1, result.stdout
        return result.stderr

    def change(db, lines):
        record = json.loads(db.execute("SELECT record_json FROM events WHERE seq=5").fetchone()[0])
        record["message"] = "nothing happened here"
        db.execute("UPDATE events SET record_json=? WHERE seq=5", (json.dumps(record),))

    def delete(db, lines):
        db.execute("DELETE FROM events WHERE seq=6")

    def reorder(db, lines):
        a = db.execute("SELECT record_json, prev, hash FROM events WHERE seq=7").fetchone()
        b = db.execute("SELECT record_json, prev, hash FROM events WHERE seq=8").fetchone()
        db.execute("UPDATE events SET record_json=?, prev=?, hash=? WHERE seq=7", b)
        db.execute("UPDATE events SET record_json=?, prev=?, hash=? WHERE seq=8", a)

    def cut_store(db, lines):
        db.execute("DELETE FROM events WHERE seq > ?", (total - 3,))

    def cut_file(db, lines):
        jsonl.write_text("\n".join(lines[:-3]) + "\n")

    def change_file(db, lines):
        record = json.loads(lines[3])
        record["message"] = "nothing happened here"
        lines[3] = json.dumps(record)
        jsonl.write_text("\n".join(lines) + "\n")

    def reorder_file(db, lines):
        lines[4], lines[5] = lines[5], lines[4]
        jsonl.write_text("\n".join(lines) + "\n")

    assert "record 5: content does not match its hash" in tampered(change)
    assert "record 6: record 6 is missing" in tampered(delete)
    assert "record 7: does not follow the previous record" in tampered(reorder)
    err = tampered(cut_store)
    assert f"record {total - 2}:" in err and "but not in the store (cut off)" in err
    err = tampered(cut_file)
    assert f"record {total - 2}:" in err and "in the store but not in" in err
    err = tampered(change_file)
    assert "record 4 in" in err and "content does not match its hash" in err
    err = tampered(reorder_file)
    assert "record 5 in" in err and "out of order" in err


def test_a_reader_that_leaves_ends_a_command_quietly(server):
    """`wharf events | head`: the closed pipe ends the command as it ends other tools
    (status 141, nothing on stderr), never with a panic."""
    import os
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([str(BIN), "--config", str(server.root / "wharf.toml"), "events", "--catalogue"],
                              stdout=write_end, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == b"", done.stderr
