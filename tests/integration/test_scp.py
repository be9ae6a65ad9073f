"""OpenSSH scp in legacy (-O) and SFTP modes, and hostile SCP records."""

import os
import time

import pytest

from conftest import random_file, sha256


def make_tree(root):
    random_file(root / "tree" / "a.bin", 200_000)
    random_file(root / "tree" / "sub" / "b.bin", 1_500_000)
    (root / "tree" / "sub" / "deeper").mkdir(parents=True)
    (root / "tree" / "sub" / "deeper" / "c.txt").write_text("hello\n")
    os.utime(root / "tree" / "a.bin", (1_600_000_000, 1_600_000_000))
    return root / "tree"


@pytest.mark.parametrize("legacy", [True, False], ids=["scp-O", "scp-sftp"])
@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_recursive_round_trip(server, legacy, host):
    home = server.add_account("alice")
    server.start()
    tree = make_tree(server.root)
    server.scp("-r", "-p", str(tree), f"alice@{host}:/", legacy=legacy)
    for rel in ["a.bin", "sub/b.bin", "sub/deeper/c.txt"]:
        assert sha256(home / "tree" / rel) == sha256(tree / rel), rel
    if legacy:
        # -p times travel in T records.
        assert int((home / "tree" / "a.bin").stat().st_mtime) == 1_600_000_000
    back = server.root / "back"
    server.scp("-r", "-p", f"alice@{host}:/tree", str(back), legacy=legacy)
    for rel in ["a.bin", "sub/b.bin", "sub/deeper/c.txt"]:
        assert sha256(back / rel) == sha256(tree / rel), rel
    protocol = "scp" if legacy else "sftp"
    up = server.wait_event("upload.finished", path="/tree/sub/b.bin", protocol=protocol)
    assert up["sha256"] == sha256(tree / "sub" / "b.bin")
    server.wait_event("download.finished", path="/tree/sub/b.bin", protocol=protocol)


def test_single_file_to_new_name(server):
    home = server.add_account("alice")
    server.start()
    src = random_file(server.root / "one.bin", 10_000)
    server.scp(str(src), "alice@127.0.0.1:renamed.bin", legacy=True)
    assert sha256(home / "renamed.bin") == sha256(src)


def scp_raw(server, command, payload):
    """Runs `scp -t/-f` with hand-written records, as a hostile client would."""
    return server.ssh("alice", command, stdin=payload)


@pytest.mark.parametrize("name", [b"../escape.txt", b"sub/x.txt", b"..", b"", b"."])
def test_record_names_are_checked(server, name):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    result = scp_raw(server, "scp -t /", b"C0644 5 " + name + b"\nhello\0")
    assert result.returncode == 1
    assert b"\x02" in result.stdout
    assert not (server.root / "wharf-data" / "escape.txt").exists()
    assert not (home / "sub").exists()
    server.wait_event("protocol.error", protocol="scp")


def test_lying_size_leaves_no_file(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    # The header promises 1 MB; ten bytes arrive, then the client hangs up.
    result = scp_raw(server, "scp -t /", b"C0644 1000000 liar.bin\n0123456789")
    assert result.returncode != 0
    failed = server.wait_event("upload.failed", path="/liar.bin")
    assert failed["bytes"] == 10
    time.sleep(0.3)
    assert os.listdir(home) == []


def test_huge_size_is_streamed_not_allocated(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    result = scp_raw(server, "scp -t /", b"C0644 18446744073709551615 huge.bin\nabc")
    assert result.returncode != 0
    server.wait_event("upload.failed", path="/huge.bin")
    assert server.proc.poll() is None
    # The server still serves.
    src = random_file(server.root / "after.bin", 1000)
    server.scp(str(src), "alice@127.0.0.1:/after.bin", legacy=True)
    assert sha256(home / "after.bin") == sha256(src)


def test_overlong_record_is_refused(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    result = scp_raw(server, "scp -t /", b"C0644 5 " + b"a" * 10_000 + b"\n")
    assert result.returncode == 1
    server.wait_event("protocol.error", protocol="scp")
