"""Retention of the audit trail: records past their age move out of the store into gzip
JSON-lines archive files while the server runs; the store keeps a checkpoint per file;
`wharf audit verify` still checks the whole history (archives, then the store, then the
JSON-lines copy and a witness) and finds an archive changed, replaced or missing."""

import gzip
import hashlib
import json
import shutil
import sqlite3


def archives(server):
    return sorted((server.root / "wharf-data" / "archive").glob("*.jsonl.gz"))


def verify(server, *args):
    return server.wharf("audit", "verify", *args)


def test_old_records_move_to_archives_and_the_whole_history_still_verifies(server):
    config = server.root / "wharf.toml"
    # One day: nothing the test makes is that old.
    config.write_text(config.read_text().replace("[audit]\n", "[audit]\nretention_days = 1\n", 1))
    server.add_account("alice")
    server.start()
    for name in ["one", "two", "three"]:
        server.sftp("alice", f"mkdir {name}\n")
    server.wait_event("folder.created", path="/three")

    kept = server.wharf("audit", "archive", check=True)
    assert "no record of node" in kept.stdout and archives(server) == []
    before = len(server.events())

    # While the server runs: everything older than now, but the newest record, moves out.
    moved = server.wharf("audit", "archive", "--older-than", "0s", check=True)
    assert "moved to" in moved.stdout, moved.stdout
    [archive] = archives(server)
    with gzip.open(archive, "rt") as f:
        archived = [json.loads(line) for line in f]
    assert archived[0]["node_seq"] == 1 and len(archived) >= before - 1
    assert [r["node_seq"] for r in archived] == list(range(1, len(archived) + 1))
    remaining = server.events()
    assert all(r["seq"] > archived[-1]["seq"] for r in remaining), "archived records left the store"
    record = server.wait_event("audit.archived")
    assert record["attrs"]["file"] == archive.name and record["attrs"]["first"] == "1"

    # The server goes on appending after the checkpoint.
    server.sftp("alice", "mkdir four\n")
    server.wait_event("folder.created", path="/four")
    ok = verify(server)
    assert ok.returncode == 0, ok.stderr
    assert f"({len(archived)} of them in 1 archive file), intact, the same in the store and" in ok.stdout, ok.stdout
    # The JSON-lines copy as a witness: its archived records are found in the archive.
    jsonl = server.root / "wharf-data" / "audit.jsonl"
    witness = server.root / "witness.jsonl"
    shutil.copy(jsonl, witness)
    ok = verify(server, "--witness", str(witness))
    assert ok.returncode == 0, ok.stderr
    server.stop()

    original = archive.read_bytes()

    # A byte changed in the file: it is not the file that was written.
    broken = bytearray(original)
    broken[len(broken) // 2] ^= 0xFF
    archive.write_bytes(bytes(broken))
    bad = verify(server)
    assert bad.returncode == 1 and "its SHA-256 differs" in bad.stderr, bad.stderr

    # A record rewritten and the checkpoint's digest updated to match: the record's own hash
    # no longer holds.
    rewritten = [dict(r) for r in archived]
    rewritten[1]["message"] = "nothing happened here"
    body = gzip.compress("".join(json.dumps(r) + "\n" for r in rewritten).encode())
    archive.write_bytes(body)
    db = sqlite3.connect(server.root / "wharf-data" / "wharf.db")
    db.execute("UPDATE audit_checkpoints SET sha256 = ?", (hashlib.sha256(body).hexdigest(),))
    db.commit()
    bad = verify(server)
    assert bad.returncode == 1 and "record 2 in" in bad.stderr and "does not match its hash" in bad.stderr, bad.stderr
    archive.write_bytes(original)
    db.execute("UPDATE audit_checkpoints SET sha256 = ?", (hashlib.sha256(original).hexdigest(),))
    db.commit()
    db.close()

    # Moved elsewhere (kept offline): missing here, found where it is given.
    elsewhere = server.root / "offline"
    elsewhere.mkdir()
    shutil.move(archive, elsewhere / archive.name)
    bad = verify(server)
    assert bad.returncode == 1 and f"archive {archive.name}" in bad.stderr and "--archives" in bad.stderr
    ok = verify(server, "--archives", str(elsewhere))
    assert ok.returncode == 0 and "1 archive file" in ok.stdout, ok.stderr
