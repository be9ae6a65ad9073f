"""SFTP and SSH with clients other than OpenSSH's: asyncssh, paramiko, rclone and curl
(libssh2), with their default settings."""

import asyncio
import hashlib
import os
import shutil
import subprocess

import pytest

from conftest import random_file, sha256


def asyncssh_connect(server, user="alice"):
    import asyncssh
    return asyncssh.connect(
        "127.0.0.1", port=server.port, username=user, client_keys=[str(server.key)],
        known_hosts=None, agent_path=None, password=None,
    )


# -- SYMLINK argument order ------------------------------------------------------------

def test_symlink_order_follows_the_client(server):
    """asyncssh sends SYMLINK in the draft's order to a server that is not OpenSSH;
    OpenSSH's sftp and paramiko send it reversed, as OpenSSH's sftp-server reads it. Each
    makes a link at the name it asked for, leading to the file it named."""
    import asyncssh
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "t.txt").write_text("target\n")

    async def run():
        async with asyncssh_connect(server) as conn:
            async with conn.start_sftp_client() as sftp:
                await sftp.symlink("t.txt", "by-asyncssh")
                assert await sftp.readlink("by-asyncssh") == "t.txt"
                async with sftp.open("by-asyncssh") as f:
                    assert await f.read() == "target\n"
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.symlink("t.txt", "by-asyncssh")
    asyncio.run(run())
    assert os.readlink(home / "by-asyncssh") == "t.txt"

    client = server.paramiko("alice")
    try:
        sftp = client.open_sftp()
        sftp.symlink("t.txt", "by-paramiko")
        assert sftp.readlink("by-paramiko") == "t.txt"
    finally:
        client.close()
    assert os.readlink(home / "by-paramiko") == "t.txt"

    server.sftp("alice", "symlink t.txt by-openssh\n")
    assert os.readlink(home / "by-openssh") == "t.txt"
    assert (home / "t.txt").read_text() == "target\n"
    links = [e for e in server.events() if e["name"] == "link.created"]
    assert sorted(e["path"] for e in links if e["outcome"] == "success") == [
        "/by-asyncssh", "/by-openssh", "/by-paramiko"]
    assert all(e["path2"] == "/t.txt" for e in links if e["outcome"] == "success")


# -- parallel large transfers --------------------------------------------------------------

def test_asyncssh_parallel_large_transfers(server):
    server.add_account("alice")
    server.start()
    sources = [random_file(server.root / "up" / f"big{i}.bin", 20 * 1024 * 1024) for i in range(4)]

    async def run():
        async with asyncssh_connect(server) as conn:
            async with conn.start_sftp_client() as sftp:
                await asyncio.gather(*(sftp.put(str(p), f"/big{i}.bin") for i, p in enumerate(sources)))
                down = server.root / "down"
                down.mkdir()
                await asyncio.gather(*(sftp.get(f"/big{i}.bin", str(down / f"big{i}.bin"))
                                       for i in range(4)))
    asyncio.run(run())
    for i, src in enumerate(sources):
        digest = sha256(src)
        assert sha256(server.root / "down" / f"big{i}.bin") == digest
        assert sha256(server.homes / "alice" / f"big{i}.bin") == digest
        finished = server.wait_event("upload.finished", path=f"/big{i}.bin")
        assert finished["sha256"] == digest and finished["bytes"] == 20 * 1024 * 1024


# -- a session's own uploads in progress -----------------------------------------------------

def test_own_upload_in_progress_removed_or_renamed(server):
    """The core's rules for an upload the session still has open, with a plain SFTP client:
    a remove gives it up (nothing kept, `upload.failed`), a rename makes it commit under
    the new name, and a second open for writing joins it."""
    home = server.add_account("alice")
    server.start()
    client = server.paramiko("alice")
    try:
        sftp = client.open_sftp()
        f = sftp.open("scratch.txt", "wb")
        f.write(b"scratch")
        f.flush()
        assert sftp.stat("scratch.txt").st_size == 7
        sftp.remove("scratch.txt")
        f.write(b" more")
        f.close()
        assert "scratch.txt" not in sftp.listdir(".")

        f = sftp.open("draft.tmp", "wb")
        f.write(b"one ")
        f.flush()
        sftp.posix_rename("draft.tmp", "final.txt")
        g = sftp.open("final.txt", "r+")
        g.seek(4)
        g.write(b"two")
        g.close()
        f.write(b"")
        f.close()
        assert sftp.open("final.txt").read() == b"one two"
    finally:
        client.close()
    assert not (home / "scratch.txt").exists()
    assert (home / "final.txt").read_bytes() == b"one two"
    assert not (home / "draft.tmp").exists()
    failed = server.wait_event("upload.failed", path="/scratch.txt")
    assert failed["attrs"]["kept"] == "false"
    done = server.wait_event("upload.finished", path="/final.txt")
    assert done["sha256"] == hashlib.sha256(b"one two").hexdigest()
    assert not [e for e in server.events() if e["name"] == "upload.finished" and e["path"] == "/draft.tmp"]
