"""WebDAV under /dav/ with a real client (rclone's webdav backend) and raw requests: upload
and download trees, folders, moves, deletes, rules and events recorded as `webdav`."""

import os
import subprocess

import pytest

from conftest import random_file, sha256

PASSWORD = "dav-pass-123"


def rclone(server, host, *args, user="alice"):
    obscured = subprocess.run(["rclone", "obscure", PASSWORD], capture_output=True, text=True,
                              check=True).stdout.strip()
    env = dict(os.environ,
               RCLONE_CONFIG_WH_TYPE="webdav",
               RCLONE_CONFIG_WH_URL=f"https://{host}:{server.https_port}/dav/",
               RCLONE_CONFIG_WH_VENDOR="other",
               RCLONE_CONFIG_WH_USER=user,
               RCLONE_CONFIG_WH_PASS=obscured)
    return subprocess.run(["rclone", "--config", "/dev/null", "--no-check-certificate",
                           "--retries", "1", "--low-level-retries", "1", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=server.root)


def tree(root):
    return {os.path.relpath(os.path.join(d, f), root): sha256(os.path.join(d, f))
            for d, _, files in os.walk(root) for f in files}


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_rclone_round_trip(server, host):
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--deny", r"re:\.exe$=write,overwrite", "--allow", "/**=all",
                 check=True)
    home = server.add_account("alice", password=PASSWORD, groups=["partners"])
    server.start()
    local = server.root / "local"
    random_file(local / "a.bin", 2_000_000)
    random_file(local / "sub" / "b.bin", 40_000)
    (local / "sub" / "ü note.txt").write_text("webdav\n")
    r = rclone(server, host, "copy", "local", "wh:up")
    assert r.returncode == 0, r.stderr
    assert tree(home / "up") == tree(local)
    r = rclone(server, host, "copy", "wh:up", "back")
    assert r.returncode == 0, r.stderr
    assert tree(server.root / "back") == tree(local)
    r = rclone(server, host, "moveto", "wh:up/a.bin", "wh:up/sub/a-moved.bin")
    assert r.returncode == 0, r.stderr
    assert (home / "up" / "sub" / "a-moved.bin").exists() and not (home / "up" / "a.bin").exists()
    r = rclone(server, host, "deletefile", "wh:up/sub/b.bin")
    assert r.returncode == 0, r.stderr
    assert not (home / "up" / "sub" / "b.bin").exists()
    # The rules apply: no .exe uploads.
    random_file(server.root / "tool.exe", 1000)
    r = rclone(server, host, "copyto", "tool.exe", "wh:tool.exe")
    assert r.returncode != 0
    assert not (home / "tool.exe").exists()
    denied = server.wait_event("permission.denied", protocol="webdav", path="/tool.exe")
    assert denied["attrs"]["verb"] == "write"
    up = server.wait_event("upload.finished", protocol="webdav", path="/up/a.bin")
    assert up["sha256"] == sha256(local / "a.bin")
    server.wait_event("entry.renamed", protocol="webdav")
    server.wait_event("login.succeeded", protocol="webdav", account="alice")


def test_webdav_refusals(server):
    server.add_account("alice", password=PASSWORD)
    server.start()
    base = f"https://127.0.0.1:{server.https_port}/dav"

    def dav(*args):
        r = subprocess.run(["curl", "-sk", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                            *args], capture_output=True, text=True, timeout=30)
        return int(r.stdout)

    assert dav("-X", "PROPFIND", f"{base}/") == 401
    assert dav("-u", f"alice:{PASSWORD}", "-X", "PROPFIND", "-H", "Depth: 1", f"{base}/") == 207
    for evil in ["%2e%2e/x", "..;/x", "a%5c..%5cb"]:
        assert dav("-u", f"alice:{PASSWORD}", f"{base}/{evil}") == 400, evil
    # Decoded once, `%252e%252e` is a folder named `%2e%2e`, not a way up.
    assert dav("-u", f"alice:{PASSWORD}", f"{base}/%252e%252e/x") == 404
    # MOVE with a Destination that climbs out is refused the same way.
    (server.homes / "alice").mkdir(parents=True, exist_ok=True)
    (server.homes / "alice" / "f.txt").write_text("x")
    assert dav("-u", f"alice:{PASSWORD}", "-X", "MOVE", "-H",
               f"Destination: {base}/%2e%2e/%2e%2e/stolen.txt", f"{base}/f.txt") == 400
    assert (server.homes / "alice" / "f.txt").exists()
    refused = server.wait_event("protocol.error", protocol="https")
    assert "WebDAV path refused" in refused["message"]


def test_conditional_puts_are_decided_by_the_open(server):
    # If-None-Match: * asks for a new file only, If-Match: * for an existing one: the core's
    # open decides both on the file it opens (no look before).
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    base = f"https://127.0.0.1:{server.https_port}/dav"

    def put(body, *args):
        return subprocess.run(["curl", "-sk", "-u", f"alice:{PASSWORD}", "-o", "/dev/null",
                               "-w", "%{http_code}", "-X", "PUT", "--data-binary", body, *args],
                              capture_output=True, text=True, timeout=60).stdout

    assert put("1", "-H", "If-Match: *", f"{base}/a.txt") == "412"
    assert not (home / "a.txt").exists()
    assert put("2", "-H", "If-None-Match: *", f"{base}/a.txt") == "201"
    assert put("3", "-H", "If-None-Match: *", f"{base}/a.txt") == "412"
    assert (home / "a.txt").read_text() == "2"
    assert put("4", "-H", "If-Match: *", f"{base}/a.txt") == "204"
    assert (home / "a.txt").read_text() == "4"
