"""WebDAV against third-party clients and suites: the litmus conformance suite (basic,
copymove, props, locks, http), rclone with default settings on a tree whose names hold
spaces, unicode and `%`, and names holding `%XX` reached by curl over WebDAV and the REST API."""

import os
import re
import subprocess
import urllib.parse

import pytest

from conftest import free_port, sha256

PASSWORD = "dav-pass-123"


def plain_http(server):
    """Adds a plain-HTTP service on loopback: litmus checks certificates against the system's
    trust store and has no option to trust another CA, and the same routes serve both."""
    port = free_port()
    with open(server.root / "wharf.toml", "a") as f:
        f.write(f"""
[[service]]
name = "http"
type = "http"
address = ["127.0.0.1", "::1"]
port = {port}
""")
    return port


def curl(*args):
    r = subprocess.run(["curl", "-s", "--path-as-is", "-u", f"alice:{PASSWORD}", *args],
                       capture_output=True, timeout=30)
    return r.stdout


def status(*args):
    return int(curl("-o", "/dev/null", "-w", "%{http_code}", *args))


def no_protocol_errors_or_bans(server):
    names = [e["name"] for e in server.events()]
    assert "protocol.error" not in names, [e for e in server.events() if e["name"] == "protocol.error"]
    assert "ban.added" not in names and "ban.started" not in names


@pytest.mark.parametrize("suite", ["basic", "copymove", "props", "locks", "http"])
def test_litmus(server, suite):
    port = plain_http(server)
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["litmus", f"http://127.0.0.1:{port}/dav/", "alice", PASSWORD],
                       capture_output=True, text=True, timeout=120, cwd=server.root,
                       env=dict(os.environ, TESTS=suite))
    out = r.stdout + r.stderr
    summary = re.search(r"<- summary for `%s': of (\d+) tests run: (\d+) passed, (\d+) failed"
                        % suite, out)
    assert summary, out
    assert summary.group(3) == "0" and r.returncode == 0, out
    # Warnings are allowed (litmus warns about optional behaviour), failures are not.
    assert "FAIL" not in out, out


def test_rclone_tree_with_awkward_names(server):
    port = plain_http(server)
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    local = server.root / "local"
    names = []
    for i in range(300):
        folder = local / ["plain", "with space", "ünï cødé", "pct%20dir", "100% sure"][i % 5]
        name = ["f %d.txt", "ü-%d.txt", "percent%%20%d.txt", "%%41-%d.bin", "a%%2fb-%d"][i % 5] % i
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(os.urandom(64 + i))
        names.append(os.path.relpath(folder / name, local))
    obscured = subprocess.run(["rclone", "obscure", PASSWORD], capture_output=True, text=True,
                              check=True).stdout.strip()
    remote = f":webdav,url='http://127.0.0.1:{port}/dav/',vendor=other,user=alice,pass={obscured}:"

    def rclone(*args):
        r = subprocess.run(["rclone", "--config", "/dev/null", *args], capture_output=True,
                           text=True, timeout=120, cwd=server.root)
        assert r.returncode == 0, r.stderr
        return r

    rclone("copy", "local", remote + "tree")
    for n in names:
        assert sha256(home / "tree" / n) == sha256(local / n), n
    rclone("check", "local", remote + "tree")
    # Sync after a local change: one file gone, one new, one changed.
    (local / names[0]).unlink()
    (local / "with space" / "new 100%.txt").write_text("new\n")
    (local / names[1]).write_bytes(b"changed")
    rclone("sync", "local", remote + "tree")
    rclone("check", "local", remote + "tree")
    assert not (home / "tree" / names[0]).exists()
    rclone("moveto", remote + "tree/" + names[2], remote + "tree/moved %41.txt")
    assert (home / "tree" / "moved %41.txt").exists() and not (home / "tree" / names[2]).exists()
    rclone("delete", remote + "tree")
    assert not [f for _, _, fs in os.walk(home / "tree") for f in fs]
    no_protocol_errors_or_bans(server)


def test_percent_names_are_reachable(server):
    port = plain_http(server)
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    # Made outside HTTP (as SFTP would): the name holds `%20` and `%2e%2e` literally.
    (home / "percent%20x.txt").write_text("one\n")
    (home / "%2e%2e").mkdir()
    (home / "%2e%2e" / "in.txt").write_text("two\n")
    base = f"http://127.0.0.1:{port}"
    listing = curl("-X", "PROPFIND", "-H", "Depth: 1", f"{base}/dav/").decode()
    hrefs = re.findall(r"<D:href>([^<]*)</D:href>", listing)
    href = next(h for h in hrefs if "percent" in h)
    assert href == "/dav/percent%2520x.txt", hrefs
    assert curl(base + href) == b"one\n"
    assert curl(f"{base}/dav/%252e%252e/in.txt") == b"two\n"
    assert curl(f"{base}/api/v1/files/percent%2520x.txt") == b"one\n"
    assert curl(f"{base}/api/v1/files/%252e%252e/in.txt") == b"two\n"
    # An upload by the same spelling lands under the literal name.
    assert status("-X", "PUT", "--data-binary", "x", f"{base}/dav/new%2541.txt") in (201, 204)
    assert (home / "new%41.txt").exists()
    # The web client's links spell the name so that it comes back as it is.
    page = curl(f"{base}/browse/").decode()
    link = urllib.parse.unquote(re.search(r'href="(/api/v1/files/percent[^"]*)"', page).group(1))
    assert link == "/api/v1/files/percent%20x.txt"
    # Decoded once, a way up is still a way up: refused.
    for evil in ["%2e%2e/etc/passwd", "a/%2E%2E/%2e%2e/x", "a%00b", "..%2f..%2fx"]:
        assert status(f"{base}/dav/{evil}") == 400, evil
        assert status(f"{base}/api/v1/files/{evil}") == 400, evil


LOCKINFO = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            '</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>')


def test_locks_hold_for_rest_and_across_restarts(server):
    port = plain_http(server)
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "doc.txt").write_text("v1\n")
    base = f"http://127.0.0.1:{port}"
    headers = curl("-D", "-", "-o", "/dev/null", "-X", "LOCK", "-H", "Timeout: Second-300",
                   "--data-binary", LOCKINFO, f"{base}/dav/doc.txt").decode()
    token = re.search(r"(?i)^lock-token:\s*<([^>]+)>", headers, re.M).group(1)
    # Kept in the store: a restarted server still enforces it.
    server.stop()
    server.start()
    for args in (["-X", "PUT", "--data-binary", "v2"], ["-X", "DELETE"]):
        assert status(*args, f"{base}/dav/doc.txt") == 423, args
        assert status(*args, f"{base}/api/v1/files/doc.txt") == 423, args
    assert status("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                  '{"from": "/doc.txt", "to": "/other.txt"}', f"{base}/api/v1/rename") == 423
    assert (home / "doc.txt").read_text() == "v1\n"
    # The holder writes with its token; a bogus token neither writes nor unlocks.
    assert status("-X", "PUT", "-H", "If: (<urn:uuid:00000000-0000-0000-0000-000000000000>)",
                  "--data-binary", "v2", f"{base}/dav/doc.txt") in (412, 423)
    assert status("-X", "UNLOCK", "-H", "Lock-Token: <urn:uuid:00000000-0000-0000-0000-000000000000>",
                  f"{base}/dav/doc.txt") == 409
    assert status("-X", "PUT", "-H", f"If: (<{token}>)", "--data-binary", "v2",
                  f"{base}/dav/doc.txt") in (200, 201, 204)
    assert (home / "doc.txt").read_text() == "v2"
    assert status("-X", "UNLOCK", "-H", f"Lock-Token: <{token}>", f"{base}/dav/doc.txt") == 204
    assert status("-X", "PUT", "--data-binary", "v3", f"{base}/api/v1/files/doc.txt") == 201
    refused = server.wait_event("command.refused", protocol="http", path="/doc.txt")
    assert "locked" in refused["message"]
    locked = server.wait_event("entry.locked", protocol="webdav", path="/doc.txt")
    assert locked["attrs"]["scope"] == "exclusive" and locked["attrs"]["timeout"] == "300"
    server.wait_event("entry.unlocked", protocol="webdav", path="/doc.txt")


def test_dead_properties_follow_moves(server):
    port = plain_http(server)
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "p.txt").write_text("x")
    base = f"http://127.0.0.1:{port}"
    patch = ('<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:wharf-test">'
             '<D:set><D:prop><Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>')
    assert status("-X", "PROPPATCH", "--data-binary", patch, f"{base}/dav/p.txt") == 207
    ask = ('<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:wharf-test">'
           '<D:prop><Z:colour/></D:prop></D:propfind>')

    def colour(path):
        body = curl("-X", "PROPFIND", "-H", "Depth: 0", "--data-binary", ask,
                    f"{base}/dav/{path}").decode()
        m = re.search(r"<[^>]*colour[^>]*>([^<]*)<", body)
        return m and m.group(1)

    assert colour("p.txt") == "blue"
    assert status("-X", "MOVE", "-H", f"Destination: {base}/dav/q.txt", f"{base}/dav/p.txt") == 201
    assert colour("q.txt") == "blue"
    # Over the REST API as well.
    assert status("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                  '{"from": "/q.txt", "to": "/r.txt"}', f"{base}/api/v1/rename") == 200
    assert colour("r.txt") == "blue"
    assert status("-X", "DELETE", f"{base}/api/v1/files/r.txt") == 204
    (home / "r.txt").write_text("new file, no properties")
    assert not colour("r.txt")
    server.wait_event("attributes.changed", protocol="webdav", path="/p.txt")
