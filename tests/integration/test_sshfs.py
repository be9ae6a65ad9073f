"""sshfs (FUSE) on an SFTP mount: the writes desktop tools, editors, git and SQLite make.

sshfs pipelines a STAT behind each OPEN, reads back what it writes through the same handle,
renames and removes files whose handles it has not closed yet (FUSE releases a handle after
close() returns), so the session must see its own uploads in progress under their final
names, while every other session still sees only committed files.
"""

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import time

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("sshfs") is None or not os.path.exists("/dev/fuse"),
    reason="sshfs and /dev/fuse are needed",
)


@contextlib.contextmanager
def mounted(server, user, mnt, extra=()):
    mnt.mkdir(parents=True, exist_ok=True)
    cmd = [
        "sshfs", f"{user}@127.0.0.1:/", str(mnt),
        "-p", str(server.port),
        "-o", f"IdentityFile={server.key}",
        "-o", "StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes,LogLevel=ERROR",
        *extra,
    ]
    subprocess.run(cmd, check=True, timeout=30)
    try:
        yield mnt
    finally:
        for _ in range(50):
            if subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)


def settle(server, home, name, content, timeout=10):
    """Waits until a file committed by the mount (at its handle's close, after close()
    returned) holds `content`."""
    deadline = time.time() + timeout
    path = home / name
    while time.time() < deadline:
        if path.exists() and path.read_bytes() == content:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name}: {path.read_bytes() if path.exists() else 'missing'!r}")


def wait_finished(server, path, size, timeout=10):
    deadline = time.time() + timeout
    while True:
        finished = [e for e in server.events() if e["name"] == "upload.finished" and e["path"] == path]
        if any(e["attrs"]["size"] == size for e in finished):
            return
        if time.time() > deadline:
            raise AssertionError(f"no upload.finished of {path} with size {size}: {finished}")
        time.sleep(0.2)


def test_sshfs_writes(server, tmp_path):
    home = server.add_account("alice")
    server.start()
    with mounted(server, "alice", tmp_path / "mnt") as mnt:
        # Create: OPEN with STAT pipelined behind it.
        r = subprocess.run(f"echo hello > {mnt}/c.txt", shell=True, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert (mnt / "c.txt").read_text() == "hello\n"
        # Append.
        with open(mnt / "c.txt", "a") as f:
            f.write("more\n")
        assert (mnt / "c.txt").read_text() == "hello\nmore\n"
        # Overwrite in place (truncating open of an existing file).
        (mnt / "c.txt").write_text("replaced\n")
        assert (mnt / "c.txt").read_text() == "replaced\n"
        # Overwrite in place: a read-write open without truncation, written at an offset.
        with open(mnt / "c.txt", "r+b") as f:
            f.seek(0)
            f.write(b"R")
            f.seek(0)
            assert f.read() == b"Replaced\n"
        assert (mnt / "c.txt").read_text() == "Replaced\n"
        # A link (sshfs sends SYMLINK in OpenSSH's order, as its ssh is OpenSSH).
        os.symlink("c.txt", mnt / "link")
        assert os.readlink(mnt / "link") == "c.txt"
        assert (mnt / "link").read_text() == "Replaced\n"
        # An editor's save: write a new file, then rename it over the old one.
        (mnt / "d.txt").write_text("old\n")
        with open(mnt / ".d.txt.swp", "w") as f:
            f.write("new content\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(mnt / ".d.txt.swp", mnt / "d.txt")
        assert (mnt / "d.txt").read_text() == "new content\n"
        assert not (mnt / ".d.txt.swp").exists()
        # Renamed while its descriptor is still open, then written on: one upload.
        fd = os.open(mnt / ".e.tmp", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"before rename\n")
            os.rename(mnt / ".e.tmp", mnt / "e.txt")
            os.write(fd, b"after rename\n")
        finally:
            os.close(fd)
        assert (mnt / "e.txt").read_text() == "before rename\nafter rename\n"
        # Removed while its descriptor is still open: nothing is kept.
        fd = os.open(mnt / "gone.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"scratch")
            os.unlink(mnt / "gone.txt")
            assert not (mnt / "gone.txt").exists()
            os.write(fd, b" more")
        finally:
            os.close(fd)
        # Random writes at offsets through one descriptor, read back before close.
        fd = os.open(mnt / "r.bin", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"B" * 1000, 4096)
            os.pwrite(fd, b"A" * 4096, 0)
            os.pwrite(fd, b"C" * 10, 100)
            assert os.pread(fd, 20, 95) == b"AAAAA" + b"C" * 10 + b"AAAAA"
            assert os.fstat(fd).st_size == 5096
            assert os.stat(mnt / "r.bin").st_size == 5096
        finally:
            os.close(fd)
        expected = bytearray(b"A" * 4096 + b"B" * 1000)
        expected[100:110] = b"C" * 10
        assert (mnt / "r.bin").read_bytes() == bytes(expected)
        # chmod and truncate of a file being written.
        with open(mnt / "t.txt", "w") as f:
            f.write("0123456789")
            f.flush()
            os.chmod(mnt / "t.txt", 0o600)
            os.truncate(mnt / "t.txt", 4)
        assert (mnt / "t.txt").read_text() == "0123"

    settle(server, home, "c.txt", b"Replaced\n")
    # Appending and rewriting kept the file's mode (sshfs opens an existing file with mode 0).
    assert (home / "c.txt").stat().st_mode & 0o777 == 0o644
    settle(server, home, "d.txt", b"new content\n")
    settle(server, home, "r.bin", bytes(expected))
    settle(server, home, "t.txt", b"0123")
    settle(server, home, "e.txt", b"before rename\nafter rename\n")
    assert not (home / "gone.txt").exists() and not (home / ".e.tmp").exists()
    assert oct((home / "t.txt").stat().st_mode & 0o777) == "0o600"
    assert not (home / ".d.txt.swp").exists()
    assert not [p for p in home.rglob(".wharf-part-*")]
    # The record follows the commit that made the file visible.
    wait_finished(server, "/c.txt", "9")
    assert server.wait_event("upload.finished", path="/c.txt", sha256=hashlib.sha256(b"Replaced\n").hexdigest())
    # Renamed while open: one upload, committed under the new name with every byte.
    wait_finished(server, "/e.txt", "27")
    events = server.events()
    finished = [e for e in events if e["name"] == "upload.finished"]
    assert not any(e["path"] == "/.e.tmp" for e in finished)
    assert any(e["name"] == "entry.renamed" and e["path"] == "/.e.tmp" and e["path2"] == "/e.txt"
               for e in events)
    # Removed while open: FUSE hides the file (a rename) and removes it at release; nothing
    # of it is left.
    assert not any(e["path"] == "/gone.txt" for e in finished)
    deadline = time.time() + 10
    while [p for p in home.iterdir() if p.name.startswith(".fuse_hidden")] and time.time() < deadline:
        time.sleep(0.1)
    assert not [p for p in home.iterdir() if p.name.startswith(".fuse_hidden")]


def test_sshfs_git_and_sqlite(server, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is needed")
    home = server.add_account("alice")
    server.start()
    env = dict(os.environ, GIT_AUTHOR_NAME="A", GIT_AUTHOR_EMAIL="a@example.org",
               GIT_COMMITTER_NAME="A", GIT_COMMITTER_EMAIL="a@example.org",
               GIT_CONFIG_NOSYSTEM="1", HOME=str(tmp_path))
    with mounted(server, "alice", tmp_path / "mnt") as mnt:
        repo = mnt / "repo"
        repo.mkdir()
        git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], env=env,  # noqa: E731
                                        capture_output=True, text=True, timeout=60)
        r = git("init", "-q")
        assert r.returncode == 0, r.stderr
        (repo / "readme.txt").write_text("first\n")
        assert git("add", "readme.txt").returncode == 0
        r = git("commit", "-q", "-m", "first")
        assert r.returncode == 0, r.stderr
        (repo / "readme.txt").write_text("second\n")
        r = git("commit", "-q", "-am", "second")
        assert r.returncode == 0, r.stderr
        r = git("log", "--oneline")
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r.stdout + r.stderr
        assert git("status", "--porcelain").stdout == ""
        r = git("fsck", "--strict")
        assert r.returncode == 0, r.stderr

        db = sqlite3.connect(mnt / "data.db")
        db.execute("create table t (id integer primary key, v text)")
        db.executemany("insert into t (v) values (?)", [(f"row {i}",) for i in range(500)])
        db.commit()
        db.execute("update t set v = 'changed' where id % 7 = 0")
        db.commit()
        assert db.execute("select count(*) from t where v = 'changed'").fetchone()[0] == 71
        db.close()
        db = sqlite3.connect(mnt / "data.db")
        assert db.execute("select count(*) from t").fetchone()[0] == 500
        db.execute("insert into t (v) values ('again')")
        db.commit()
        db.close()

    # What the mount wrote is there for everyone once committed.
    deadline = time.time() + 10
    while True:
        try:
            db = sqlite3.connect(home / "data.db")
            count = db.execute("select count(*) from t").fetchone()[0]
            db.close()
        except sqlite3.DatabaseError:
            count = None
        if count == 501 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert count == 501
    r = subprocess.run(["git", "-C", str(home / "repo"), "log", "--oneline"], env=env,
                       capture_output=True, text=True)
    assert len(r.stdout.splitlines()) == 2, r.stdout + r.stderr
    assert not [p for p in home.rglob(".wharf-part-*")]


def test_other_sessions_never_see_a_partial_file(server, tmp_path):
    home = server.add_account("alice")
    server.start()
    with mounted(server, "alice", tmp_path / "mnt") as mnt:
        fd = os.open(mnt / "growing.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"x" * 65536)
            os.fsync(fd)
            # The mount's own session sees the file in progress...
            assert os.stat(mnt / "growing.bin").st_size == 65536
            # ...another session (and the disk under the final name) does not.
            client = server.paramiko("alice")
            try:
                sftp = client.open_sftp()
                with pytest.raises(FileNotFoundError):
                    sftp.stat("/growing.bin")
                assert "growing.bin" not in sftp.listdir("/")
            finally:
                client.close()
            assert not (home / "growing.bin").exists()
        finally:
            os.close(fd)
    settle(server, home, "growing.bin", b"x" * 65536)
