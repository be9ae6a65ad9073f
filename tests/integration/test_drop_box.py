"""The drop box: an account allowed to create files and nothing else (no `list`, no `read`,
no `overwrite`) uploads over every protocol, sees nothing when it lists, and cannot replace
or read back what is there. Whether an upload may start is the core's decision on the
place it lands, the same for SFTP, SCP, FTPS, HTTPS and WebDAV."""

import io
import subprocess

import pytest

from conftest import random_file, sha256

PASSWORD = "drop-box-Secret-42"


@pytest.fixture
def dropbox(server):
    server.wharf("group", "add", "dropbox", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=write", check=True)
    home = server.add_account("dora", password=PASSWORD, groups=["dropbox"])
    server.start()
    return home


def curl(server, *args):
    r = subprocess.run(["curl", "-sk", "-u", f"dora:{PASSWORD}", "-o", "/dev/null", "-w", "%{http_code}",
                        *args], capture_output=True, text=True, timeout=60)
    return r.stdout


def test_drop_box_uploads_on_every_protocol(server, dropbox, tmp_path):
    files = {name: random_file(tmp_path / "src" / name, size)
             for name, size in [("by-sftp.bin", 300_000), ("by-scp.bin", 200_000), ("by-scp-d.bin", 1000),
                                ("by-ftps.bin", 250_000), ("by-https.bin", 180_000),
                                ("by-webdav.bin", 120_000)]}

    # OpenSSH sftp: put to a name, and to the home folder (the client asks whether it is one).
    server.sftp("dora", f"put {files['by-sftp.bin']} /by-sftp.bin\n")
    # OpenSSH scp, SFTP-based and legacy: to a name, and into the home folder by its name.
    server.scp(str(files["by-scp.bin"]), f"dora@127.0.0.1:/by-scp.bin")
    server.scp(str(files["by-scp-d.bin"]), f"dora@127.0.0.1:/", legacy=True)
    # FTPS (AUTH TLS, PROT P).
    ftps = server.ftp_client("ftps", "dora", PASSWORD)
    with open(files["by-ftps.bin"], "rb") as f:
        assert ftps.storbinary("STOR by-ftps.bin", f).startswith("226")
    # REST + STOR on a name that does not exist: the core decides from the file it opens.
    with pytest.raises(Exception) as refused:
        ftps.storbinary("STOR by-ftps.bin", io.BytesIO(b"again"), rest=5)
    assert str(refused.value).startswith("5"), refused.value
    ftps.quit()
    base = f"https://127.0.0.1:{server.https_port}"
    assert curl(server, "-T", str(files["by-https.bin"]), f"{base}/api/v1/files/by-https.bin") == "201"
    assert curl(server, "-T", str(files["by-webdav.bin"]), f"{base}/dav/by-webdav.bin") == "201"

    for name, src in files.items():
        stored = dropbox / name
        assert stored.is_file(), f"{name} was not stored; events: {server.events()[-10:]}"
        assert sha256(stored) == sha256(src), name
    finished = {e["path"] for e in server.events() if e["name"] == "upload.finished"}
    assert {f"/{n}" for n in files} <= finished, finished


def test_drop_box_sees_nothing_and_replaces_nothing(server, dropbox, tmp_path):
    dropbox.mkdir(parents=True, exist_ok=True)
    (dropbox / "earlier.txt").write_text("a partner's earlier file")
    src = tmp_path / "new.txt"
    src.write_text("replacement")

    # Listing shows nothing (refused, or empty) on every protocol.
    out = server.sftp("dora", "ls -la /\n", check=False)
    assert "earlier.txt" not in out.stdout
    ftps = server.ftp_client("ftps", "dora", PASSWORD)
    try:
        listing = ftps.nlst()
    except Exception:
        listing = []
    assert "earlier.txt" not in " ".join(listing)
    # No replacing, no reading back.
    with pytest.raises(Exception):
        ftps.storbinary("STOR earlier.txt", io.BytesIO(b"overwritten"))
    with pytest.raises(Exception):
        ftps.retrbinary("RETR earlier.txt", lambda _: None)
    ftps.quit()
    server.sftp("dora", f"put {src} /earlier.txt\n", check=False)
    server.scp(str(src), "dora@127.0.0.1:/earlier.txt", check=False)
    base = f"https://127.0.0.1:{server.https_port}"
    assert curl(server, "-T", str(src), f"{base}/api/v1/files/earlier.txt") == "403"
    assert curl(server, "-T", str(src), f"{base}/dav/earlier.txt") == "403"
    assert curl(server, f"{base}/api/v1/files/earlier.txt") == "403"
    assert curl(server, "-X", "PROPFIND", "-H", "Depth: 1", f"{base}/dav/") in ("403", "404")
    r = subprocess.run(["curl", "-sk", "-u", f"dora:{PASSWORD}", f"{base}/api/v1/files/"],
                       capture_output=True, text=True, timeout=60)
    assert "earlier.txt" not in r.stdout
    assert (dropbox / "earlier.txt").read_text() == "a partner's earlier file"
    assert not any(e["name"] == "upload.finished" for e in server.events())
