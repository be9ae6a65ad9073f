"""FTP commands real clients send that were refused: XSHA256, OPTS HASH, LIST and NLST of a
file, and lftp's active mode over IPv6 (`EPRT |2|::|port|`)."""

import ftplib
import hashlib
import socket
import subprocess

import pytest

from conftest import random_file
from test_ftp import PASSWORD, ftp_server  # noqa: F401 (fixture)


def test_hash_commands_and_listings_of_a_file(ftp_server):
    s = ftp_server
    data = random_file(s.home / "f.bin", 3000).read_bytes()
    client = s.ftp("alice", PASSWORD)
    try:
        digest = hashlib.sha256(data).hexdigest()
        assert digest in client.sendcmd("XSHA256 f.bin").lower()
        assert client.sendcmd("OPTS HASH") == "200 SHA-256"
        assert client.sendcmd("OPTS HASH SHA-256") == "200 SHA-256"
        lines = []
        client.retrlines("LIST f.bin", lines.append)
        assert len(lines) == 1 and lines[0].startswith("-") and lines[0].endswith(" f.bin"), lines
        assert " 3000 " in lines[0]
        assert client.nlst("f.bin") == ["f.bin"]
    finally:
        client.quit()


def test_lftp_active_mode_over_ipv6(ftp_server):
    s = ftp_server
    random_file(s.home / "g.bin", 5000)
    # lftp binds its active listener to the unspecified address and says so.
    r = subprocess.run(["lftp", "-d", "-c", "set ftp:ssl-allow no; set ftp:passive-mode off; "
                        "set net:max-retries 1; set net:timeout 15; "
                        f"open -u alice,{PASSWORD} -p {s.ftp_port} ::1; get g.bin -o got.bin"],
                       capture_output=True, text=True, timeout=120, cwd=s.root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "EPRT |2|" in r.stderr
    assert (s.root / "got.bin").read_bytes() == (s.home / "g.bin").read_bytes()
    # The same, spelled out: the unspecified address means the control connection's peer.
    listener = socket.socket(socket.AF_INET6)
    listener.bind(("::1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = s.ftp("alice", PASSWORD, host="::1")
    try:
        assert client.sendcmd(f"EPRT |2|::|{port}|").startswith("200")
        client.voidcmd("TYPE I")
        client.sendcmd("RETR g.bin")
        conn, _ = listener.accept()
        got = b""
        while chunk := conn.recv(65536):
            got += chunk
        conn.close()
        client.voidresp()
        assert got == (s.home / "g.bin").read_bytes()
        # Any other address is still refused (no FTP bounce).
        with pytest.raises(ftplib.error_perm, match="501"):
            client.sendcmd(f"EPRT |2|::2|{port}|")
    finally:
        listener.close()
        client.quit()


def test_hash_names_the_bytes_hashed_without_list(ftp_server):
    # An account that may read but not list: HASH reports the range of the file it hashed,
    # not a size guessed from a look it may not take.
    s = ftp_server
    s.wharf("group", "add", "readers", "--home-template", str(s.homes) + "/${USER}",
            "--create-home", "--allow", "/**=read", check=True)
    s.add_account("rita", password=PASSWORD, groups=["readers"])
    home = s.homes / "rita"
    home.mkdir(parents=True, exist_ok=True)
    data = random_file(home / "r.bin", 4321).read_bytes()
    client = s.ftp("rita", PASSWORD)
    try:
        digest = hashlib.sha256(data).hexdigest()
        assert client.sendcmd("HASH r.bin").lower() == f"213 sha-256 0-4321 {digest} r.bin"
    finally:
        client.quit()


def test_lftp_continues_an_upload_from_the_files_end(ftp_server):
    # lftp's `put -c` asks the size and continues with REST + STOR; the core checks the
    # offset against the file it opens.
    s = ftp_server
    src = random_file(s.root / "whole.bin", 300_000)
    data = src.read_bytes()
    (s.home / "whole.bin").write_bytes(data[:100_000])
    r = subprocess.run(["lftp", "-c", "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 15; "
                        f"open -u alice,{PASSWORD} -p {s.ftp_port} 127.0.0.1; put -c {src} -o whole.bin"],
                       capture_output=True, text=True, timeout=120, cwd=s.root)
    assert r.returncode == 0, r.stderr
    assert (s.home / "whole.bin").read_bytes() == data
    started = [e for e in s.events() if e["name"] == "upload.started" and e["path"] == "/whole.bin"]
    assert started and started[-1]["attrs"].get("mode") == "resume", started
