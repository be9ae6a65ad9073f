"""A small request may not cost the server far more than the client: sparse offsets, size
changes, digests for HEAD and ranges, copies that feed on themselves, WebDAV COPY and
overlapping ranges. Each attack is made with a real client; what is asserted is what the
server did (refused, stored nothing, hashed nothing), never how long it took."""

import base64
import hashlib
import os
import subprocess

import paramiko
import pytest
from paramiko.sftp import CMD_CLOSE, CMD_EXTENDED, CMD_WRITE, int64

from conftest import random_file, sha256

PASSWORD = "costs-pass-1234"
GIB = 1 << 30


@pytest.fixture
def costly(server):
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--upload-mode", "resumable", "--allow", "/**=all", check=True)
    server.wharf("group", "add", "atomics", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=all", check=True)
    home = server.add_account("eve", password=PASSWORD, groups=["partners"])
    server.add_account("ava", password=PASSWORD, groups=["atomics"])
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    return home


def https(server, *args):
    return subprocess.run(["curl", "-sk", "-u", f"eve:{PASSWORD}", "-D", "-", "-o", "/dev/null", *args],
                          capture_output=True, text=True, timeout=60)


def headers_of(text):
    return {k.strip().lower(): v.strip() for k, _, v in
            (line.partition(":") for line in text.splitlines()[1:] if ":" in line)}


def raw_write(sftp, f, offset, data):
    """One SFTP WRITE, its status checked (paramiko's own file object buffers writes)."""
    sftp._request(CMD_WRITE, f.handle, int64(offset), data)


def raw_close(sftp, f):
    """One SFTP CLOSE, its status checked (paramiko's own close ignores a failure)."""
    f._closed = True
    sftp._request(CMD_CLOSE, f.handle)


@pytest.mark.parametrize("user", ["ava", "eve"])
def test_sparse_writes_are_not_stored(server, costly, user):
    """ava uploads atomically, eve in resumable mode (which keeps what an upload wrote)."""
    home = server.homes / user
    home.mkdir(parents=True, exist_ok=True)
    client = server.paramiko(user, password=PASSWORD)
    try:
        sftp = client.open_sftp()
        # Far past the data received (8 GiB): the write itself is refused, and the upload
        # cannot be committed after it.
        f = sftp.open("/sparse.bin", "w")
        with pytest.raises(IOError):
            raw_write(sftp, f, 8 * GIB, b"x")
        with pytest.raises(IOError):
            raw_close(sftp, f)
        # A smaller hole is written, but the upload is not stored as a finished file.
        f = sftp.open("/holed.bin", "w")
        raw_write(sftp, f, 0, b"head")
        raw_write(sftp, f, 32 << 20, b"x")
        with pytest.raises(IOError):
            raw_close(sftp, f)
        # Beyond the maximum file size (64 GiB by default), nothing is written either.
        f = sftp.open("/far.bin", "w")
        with pytest.raises(IOError):
            raw_write(sftp, f, 65 * GIB, b"x")
        with pytest.raises(IOError):
            raw_close(sftp, f)
    finally:
        client.close()
    for name in ["sparse.bin", "far.bin"]:
        assert not (home / name).exists() or os.path.getsize(home / name) < GIB, name
    if user == "ava":
        assert not (home / "holed.bin").exists()
    else:
        # Resumable mode keeps what was received in order, never the hole after it.
        assert (home / "holed.bin").read_bytes() == b"head"
    events = server.events()
    failed = [e for e in events if e["name"] == "upload.failed" and e["path"] == "/holed.bin"]
    assert failed and "never written" in failed[-1]["message"], failed
    refused = [e for e in events if e["name"] == "upload.failed" and e["path"] == "/sparse.bin"]
    assert refused, [e["name"] for e in events]
    assert not [e for e in events if e["name"] == "upload.finished" and e["account"] == user]


def test_size_changes_are_bounded_and_head_never_hashes(server, costly):
    home = costly
    random_file(home / "grow.bin", 1000)
    client = server.paramiko("eve", password=PASSWORD)
    try:
        sftp = client.open_sftp()
        # Growing a file leaves bytes nobody wrote: within 64 MiB of them in all.
        for size in (8 * GIB, 65 * GIB, 100 << 20):
            with pytest.raises(IOError):
                sftp.truncate("/grow.bin", size)
        sftp.truncate("/grow.bin", 32 << 20)
        with pytest.raises(IOError):
            sftp.truncate("/grow.bin", 97 << 20)
    finally:
        client.close()
    assert os.path.getsize(home / "grow.bin") == 32 << 20
    base = f"https://127.0.0.1:{server.https_port}/api/v1/files/grow.bin"
    # HEAD, a one-byte range and a whole GET of more than 16 MiB name no digest they would
    # have to compute: nothing hashed the file (a digest remembered would show).
    for args in (["-I", base], ["-r", "0-0", base], [base]):
        r = https(server, *args)
        assert r.returncode == 0, r.stderr
        h = headers_of(r.stdout)
        assert "etag" in h and "repr-digest" not in h, h
    assert "user.wharf.sha256" not in os.listxattr(home / "grow.bin")
    # A whole-file GET of a small file still names its digest.
    small = random_file(home / "small.bin", 5000)
    r = https(server, f"https://127.0.0.1:{server.https_port}/api/v1/files/small.bin")
    assert "repr-digest" in headers_of(r.stdout)
    (home / "grow.bin").unlink()


def copy_data(sftp, read_handle, read_offset, length, write_handle, write_offset):
    return sftp._request(CMD_EXTENDED, "copy-data", read_handle, int64(read_offset), int64(length),
                         write_handle, int64(write_offset))


def test_copy_data_never_feeds_on_itself(server, costly):
    home = costly
    src = random_file(home / "self.bin", 1 << 20)
    original = src.read_bytes()
    client = server.paramiko("eve", password=PASSWORD)
    try:
        sftp = client.open_sftp()
        reader = sftp.open("/self.bin", "r")
        # Resumable mode: opened without truncation, the write handle is the same file.
        writer = sftp.open("/self.bin", "r+")
        # "To the end" means the end as it is now: one copy of the megabyte, then done.
        copy_data(sftp, reader.handle, 0, 0, writer.handle, 1 << 20)
        # Overlapping ranges within one file are refused.
        with pytest.raises(IOError):
            copy_data(sftp, reader.handle, 0, 0, writer.handle, 1 << 19)
        writer.close()
        reader.close()
    finally:
        client.close()
    data = (home / "self.bin").read_bytes()
    assert len(data) == 2 << 20
    assert data == original + original


def dav(server, *args):
    return subprocess.run(["curl", "-sk", "-u", f"eve:{PASSWORD}", "-o", "/dev/null", "-w", "%{http_code}",
                           *args], capture_output=True, text=True, timeout=120)


def test_webdav_copy_and_ranges_are_bounded(server, costly):
    home = costly
    base = f"https://127.0.0.1:{server.https_port}/dav"
    # A folder holding links to itself: WebDAV does not follow them, so the copy ends.
    (home / "looped").mkdir()
    (home / "looped" / "a.txt").write_text("a\n")
    os.symlink(".", home / "looped" / "loop")
    os.symlink("..", home / "looped" / "up")
    r = dav(server, "-X", "COPY", "-H", f"Destination: {base}/copied", f"{base}/looped")
    assert r.stdout in ("201", "204"), r.stdout
    copied = [os.path.join(d, f) for d, _, fs in os.walk(home / "copied") for f in fs]
    assert copied == [str(home / "copied" / "a.txt")]
    # A copy of more than 10,000 entries stops there.
    many = home / "many"
    many.mkdir()
    for i in range(10_050):
        (many / f"{i:05}").touch()
    r = dav(server, "-X", "COPY", "-H", f"Destination: {base}/many2", f"{base}/many")
    assert r.stdout in ("207", "507"), r.stdout
    assert len(os.listdir(home / "many2")) <= 10_000
    # Overlapping ranges: one 1 MiB file asked for 5,001 times in one request.
    random_file(home / "one.bin", 1 << 20)
    ranges = ",".join(["0-1048575"] * 5001)
    r = dav(server, "-H", f"Range: bytes={ranges}", f"{base}/one.bin")
    assert r.stdout == "416", r.stdout
    assert dav(server, "-H", "Range: bytes=0-99", f"{base}/one.bin").stdout == "206"


def test_webdav_put_far_past_the_end_is_not_stored(server, costly):
    home = costly
    base = f"https://127.0.0.1:{server.https_port}/dav"
    body = server.root / "x.bin"
    body.write_bytes(b"x")
    r = dav(server, "-X", "PUT", "-H", f"Content-Range: bytes {8 * GIB}-{8 * GIB}/*",
            "--data-binary", f"@{body}", f"{base}/far.bin")
    assert r.stdout.startswith(("4", "5")) and r.stdout != "500", r.stdout
    assert not (home / "far.bin").exists() or os.path.getsize(home / "far.bin") < GIB
    assert sha256(body)  # the client's copy is untouched


def test_a_remembered_digest_never_vouches_for_other_bytes(server, costly):
    """Size and time are the client's to set: after a change made through Wharf the digest
    remembered for the old content is forgotten, so no record or header can name it."""
    home = costly
    data = random_file(server.root / "a.bin", 1 << 20).read_bytes()
    zeros = hashlib.sha256(bytes(1 << 20)).hexdigest()
    url = f"https://127.0.0.1:{server.https_port}/api/v1/files/a.bin"
    client = server.paramiko("eve", password=PASSWORD)
    try:
        sftp = client.open_sftp()
        with sftp.open("/a.bin", "w") as f:
            f.write(data)
        sftp.utime("/a.bin", (1_700_000_000, 1_700_000_000))
        h = headers_of(https(server, url).stdout)
        assert h["repr-digest"] == repr_digest(hashlib.sha256(data).hexdigest())
        sftp.truncate("/a.bin", 0)
        sftp.truncate("/a.bin", 1 << 20)
        sftp.utime("/a.bin", (1_700_000_000, 1_700_000_000))
        h = headers_of(https(server, url).stdout)
        assert h["repr-digest"] == repr_digest(zeros), h
        # A write in place (resumable mode) forgets it too.
        with sftp.open("/a.bin", "r+") as f:
            f.write(b"changed")
        sftp.utime("/a.bin", (1_700_000_000, 1_700_000_000))
        changed = b"changed" + bytes((1 << 20) - 7)
        h = headers_of(https(server, url).stdout)
        assert h["repr-digest"] == repr_digest(hashlib.sha256(changed).hexdigest()), h
    finally:
        client.close()
    assert (home / "a.bin").read_bytes() == changed


def repr_digest(hex_digest):
    return "sha-256=:" + base64.b64encode(bytes.fromhex(hex_digest)).decode() + ":"
