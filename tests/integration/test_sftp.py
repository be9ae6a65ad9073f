"""OpenSSH sftp (and paramiko for cut connections) against the SFTP engine."""

import os
import time

import pytest

from conftest import random_file, sha256


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_daily_work_with_openssh_sftp(server, host):
    home = server.add_account("alice")
    server.start()
    src = random_file(server.root / "local" / "report.bin", 3_000_000)
    out = server.sftp("alice", f"""
pwd
mkdir docs
put {src} docs/report.bin
ls -l docs
get docs/report.bin back.bin
rename docs/report.bin docs/final.bin
chmod 640 docs/final.bin
symlink docs/final.bin link.bin
ls -l
get link.bin via-link.bin
rm link.bin
mkdir empty
rmdir empty
""", host=host)
    assert "Remote working directory: /" in out.stdout
    assert sha256(server.root / "back.bin") == sha256(src)
    assert sha256(server.root / "via-link.bin") == sha256(src)
    assert (home / "docs" / "final.bin").exists()
    assert oct((home / "docs" / "final.bin").stat().st_mode & 0o777) == "0o640"
    assert not (home / "empty").exists()
    assert not (home / "link.bin").exists()

    digest = sha256(src)
    up = server.wait_event("upload.finished", path="/docs/report.bin")
    assert up["sha256"] == digest and up["bytes"] == 3_000_000 and up["protocol"] == "sftp"
    assert up["account"] == "alice"
    assert up["remote"].startswith("[::1]:" if host == "::1" else "127.0.0.1:")
    server.wait_event("download.finished", path="/docs/report.bin", bytes=3_000_000)
    server.wait_event("entry.renamed", path="/docs/report.bin", path2="/docs/final.bin")
    server.wait_event("attributes.changed", path="/docs/final.bin")
    server.wait_event("link.created", path="/link.bin", path2="/docs/final.bin")
    server.wait_event("file.deleted", path="/link.bin")
    server.wait_event("folder.created", path="/empty")
    server.wait_event("folder.removed", path="/empty")
    server.wait_event("login.succeeded", account="alice")
    hosts = {e["remote"].rsplit(":", 1)[0].strip("[]") for e in server.events() if e["name"] == "connection.opened"}
    assert host in hosts


def test_pipelined_large_transfer(server):
    server.add_account("alice")
    server.start()
    src = random_file(server.root / "big.bin", 48 * 1024 * 1024)
    # OpenSSH 9.2's sftp does not clamp an explicit -B to the server's write limit, and its
    # own message cap is 256 KiB, so 255 KiB is the largest upload request it can send.
    server.sftp("alice", f"put {src} big.bin\n", extra=["-R", "64", "-B", "261120"])
    server.sftp("alice", "get big.bin big-back.bin\n", extra=["-R", "64", "-B", "262144"])
    assert sha256(server.root / "big-back.bin") == sha256(src)
    assert server.wait_event("upload.finished", path="/big.bin")["sha256"] == sha256(src)


def test_reput_resumes_in_resumable_mode(server):
    server.wharf("group", "add", "resume", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=all", "--upload-mode", "resumable", check=True)
    home = server.add_account("bob", groups=["resume"])
    server.start()
    src = random_file(server.root / "whole.bin", 5_000_000)
    data = src.read_bytes()
    # An upload cut off half-way, as a dropped connection leaves it.
    client = server.paramiko("bob")
    sftp = client.open_sftp()
    f = sftp.open("whole.bin", "wb")
    f.write(data[:2_000_000])
    f.flush()
    client.get_transport().close()
    deadline = time.time() + 10
    while not (home / "whole.bin").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (home / "whole.bin").stat().st_size == 2_000_000
    failed = server.wait_event("upload.failed", path="/whole.bin")
    assert failed["attrs"]["kept"] == "true"

    server.sftp("bob", f"reput {src} whole.bin\n")
    assert sha256(home / "whole.bin") == sha256(src)
    resumed = server.wait_event("upload.finished", path="/whole.bin")
    assert resumed["sha256"] == sha256(src)
    assert resumed["attrs"]["mode"] in ("resume", "append")


def test_cut_upload_leaves_nothing_in_atomic_mode(server):
    home = server.add_account("alice")
    server.start()
    (home).mkdir(parents=True, exist_ok=True)
    client = server.paramiko("alice")
    sftp = client.open_sftp()
    f = sftp.open("partial.bin", "wb")
    f.write(os.urandom(1_000_000))
    f.flush()
    # While the upload is open, nothing exists under the final name, except for the
    # session writing it, which sees its own upload in progress (as sshfs needs).
    assert not (home / "partial.bin").exists()
    assert "partial.bin" in sftp.listdir(".")
    other = server.paramiko("alice")
    assert "partial.bin" not in other.open_sftp().listdir(".")
    other.close()
    client.get_transport().close()
    event = server.wait_event("upload.failed", path="/partial.bin")
    assert event["attrs"]["kept"] == "false"
    time.sleep(0.5)
    assert os.listdir(home) == []


def test_atomic_replace_keeps_old_content_until_commit(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "doc.txt").write_bytes(b"version one\n")
    client = server.paramiko("alice")
    sftp = client.open_sftp()
    f = sftp.open("doc.txt", "wb")
    f.write(b"version two, longer\n")
    f.flush()
    assert (home / "doc.txt").read_bytes() == b"version one\n"
    f.close()
    assert (home / "doc.txt").read_bytes() == b"version two, longer\n"
    client.close()


def test_check_file_and_sha256sum(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    src = random_file(home / "data.bin", 700_000)
    result = server.ssh("alice", "sha256sum data.bin")
    assert result.returncode == 0
    assert result.stdout.decode().split()[0] == sha256(src)
    # paramiko's check() sends check-file-handle.
    client = server.paramiko("alice")
    sftp = client.open_sftp()
    with sftp.open("data.bin", "rb") as f:
        digest = f.check("sha256")
    assert digest.hex() == sha256(src)
    client.close()


def test_extensions_statvfs_hardlink_posix_rename_copy(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "a.txt").write_bytes(b"alpha")
    (home / "b.txt").write_bytes(b"beta")
    out = server.sftp("alice", "df -h\nln a.txt hard.txt\nrename b.txt a.txt\n")
    assert "Size" in out.stdout
    assert (home / "hard.txt").read_bytes() == b"alpha"
    # OpenSSH sftp's rename uses posix-rename@openssh.com, which replaces the target.
    assert (home / "a.txt").read_bytes() == b"beta"
    server.wait_event("link.created", path="/hard.txt")
    # copy-data (OpenSSH's `copy`): server-side copy through the core (events, hashing).
    server.sftp("alice", "copy a.txt c.txt\n")
    assert (home / "c.txt").read_bytes() == b"beta"
    assert server.wait_event("upload.finished", path="/c.txt")["sha256"] == sha256(home / "c.txt")
