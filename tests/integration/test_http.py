"""The REST file API over HTTPS (and HTTP) with curl: uploads, downloads with Range, ETag and
Repr-Digest, folders, renames, deletes, tokens, the route table, and refused input."""

import base64
import hashlib
import json
import os
import subprocess

import pytest

from conftest import free_port, random_file, sha256

PASSWORD = "http-pass-123"


@pytest.fixture
def https_server(server):
    return start_with_alice(server)


def start_with_alice(server):
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    server.home = home
    server.base = f"https://127.0.0.1:{server.https_port}/api/v1"
    return server


def curl(*args, auth=("alice", PASSWORD), headers=True):
    cmd = ["curl", "-sS", "-k", "-g", "--path-as-is"]
    if auth:
        cmd += ["-u", f"{auth[0]}:{auth[1]}"]
    if headers:
        cmd += ["-D", "-"]
    result = subprocess.run(cmd + list(args), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def split(raw):
    """(status, headers dict, body bytes) of `curl -D -` output (last response)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    while body.startswith(b"HTTP/"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def digest_of(data):
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_upload_download_range_and_digests(https_server, host):
    s = https_server
    base = f"https://{host}:{s.https_port}/api/v1"
    src = random_file(s.root / "big.bin", 3_000_000)
    data = src.read_bytes()
    status, headers, body = split(curl("-T", str(src), f"{base}/files/in%20box/big.bin"))
    assert status == 409 or status == 404  # the folder does not exist yet
    status, _, _ = split(curl("-X", "POST", f"{base}/folders/in%20box"))
    assert status == 201
    status, headers, body = split(curl("-T", str(src), f"{base}/files/in%20box/big.bin"))
    assert status == 201, body
    assert json.loads(body)["sha256"] == sha256(src)
    assert headers["repr-digest"] == digest_of(data)
    assert sha256(s.home / "in box" / "big.bin") == sha256(src)
    # Download: ETag, Repr-Digest, then a Range resume of a cut download.
    status, headers, body = split(curl(f"{base}/files/in%20box/big.bin"))
    assert status == 200 and body == data
    assert headers["repr-digest"] == digest_of(data) and headers["accept-ranges"] == "bytes"
    etag = headers["etag"]
    part = s.root / "part.bin"
    part.write_bytes(data[:1_234_567])
    curl("-C", "-", "-o", str(part), f"{base}/files/in%20box/big.bin", headers=False)
    assert sha256(part) == sha256(src)
    status, headers, body = split(curl("-r", "100-199", f"{base}/files/in%20box/big.bin"))
    assert status == 206 and body == data[100:200]
    assert headers["content-range"] == f"bytes 100-199/{len(data)}"
    status, _, body = split(curl("-H", f"If-None-Match: {etag}", f"{base}/files/in%20box/big.bin"))
    assert status == 304 and body == b""
    # If-Range with a stale tag: the whole file.
    status, _, body = split(curl("-r", "0-9", "-H", 'If-Range: "stale"', f"{base}/files/in%20box/big.bin"))
    assert status == 200 and len(body) == len(data)
    # Range abuse: several (overlapping) ranges, or one past the end: 416 with a JSON body,
    # and a refusal in the trail (a well-formed request, so no protocol error).
    status, headers, body = split(curl("-r", "0-100,50-150,0-", f"{base}/files/in%20box/big.bin"))
    assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
    assert json.loads(body)["error"]
    status, _, _ = split(curl("-r", "5000000-", f"{base}/files/in%20box/big.bin"))
    assert status == 416
    s.wait_event("command.refused", protocol="https")
    up = s.wait_event("upload.finished", path="/in box/big.bin", protocol="https", account="alice")
    assert up["sha256"] == sha256(src)
    assert up["remote"].rsplit(":", 1)[0].strip("[]") == host.strip("[]")


def test_folders_rename_delete_stat_and_listing(https_server):
    s = https_server
    base = s.base
    (s.home / "a.txt").write_text("alpha\n")
    status, _, body = split(curl(f"{base}/files"))
    listing = json.loads(body)
    assert status == 200 and [e["name"] for e in listing["entries"]] == ["a.txt"]
    assert listing["entries"][0]["size"] == 6 and listing["entries"][0]["type"] == "file"
    status, _, body = split(curl("-X", "POST", "-H", "Content-Type: application/json",
                                 "-d", json.dumps({"from": "/a.txt", "to": "/ü b.txt"}), f"{base}/rename"))
    assert status == 200, body
    assert (s.home / "ü b.txt").read_text() == "alpha\n"
    status, _, body = split(curl(f"{base}/stat/%C3%BC%20b.txt"))
    assert status == 200 and json.loads(body)["size"] == 6
    status, _, _ = split(curl("-X", "DELETE", f"{base}/files/%C3%BC%20b.txt"))
    assert status == 204 and not (s.home / "ü b.txt").exists()
    status, _, _ = split(curl(f"{base}/stat/nothing-here"))
    assert status == 404
    for name in ["entry.renamed", "file.deleted", "folder.listed"]:
        s.wait_event(name, protocol="https", account="alice")
    # A body that is not the JSON asked for is answered in JSON too, as the document says.
    for args, want in [(["-H", "Content-Type: application/json", "-d", "{not json"], 400),
                       (["-H", "Content-Type: application/json", "-d", '{"from": "/x"}'], 400),
                       (["-H", "Content-Type: text/plain", "-d", '{"from": "/x", "to": "/y"}'], 415)]:
        status, headers, body = split(curl("-X", "POST", *args, f"{base}/rename"))
        assert status == want, (args, status, body)
        assert headers["content-type"] == "application/json" and json.loads(body)["error"]
    spec = json.loads(split(curl(f"{base}/openapi.json", auth=None))[2])
    for method in ["get", "put", "delete"]:
        assert "400" in spec["paths"]["/api/v1/files/{path}"][method]["responses"]
    assert "415" in spec["paths"]["/api/v1/rename"]["post"]["responses"]


def test_rules_and_login_failures(server):
    server.wharf("group", "add", "readers", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=list,read", check=True)
    home = server.add_account("reader", password=PASSWORD, groups=["readers"])
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "report.txt").write_text("q3\n")
    base = f"https://127.0.0.1:{server.https_port}/api/v1"
    auth = ("reader", PASSWORD)
    status, _, body = split(curl(f"{base}/files/report.txt", auth=auth))
    assert status == 200 and body == b"q3\n"
    src = random_file(server.root / "x.bin", 1000)
    status, _, _ = split(curl("-T", str(src), f"{base}/files/new.bin", auth=auth))
    assert status == 403
    status, _, _ = split(curl("-X", "DELETE", f"{base}/files/report.txt", auth=auth))
    assert status == 403
    assert sorted(p.name for p in home.iterdir()) == ["report.txt"]
    verbs = set()
    for _ in range(50):
        verbs = {e["attrs"].get("verb") for e in server.events()
                 if e["name"] == "permission.denied" and e["protocol"] == "https"}
        if {"write", "delete"} <= verbs:
            break
    assert {"write", "delete"} <= verbs
    status, headers, _ = split(curl(f"{base}/files", auth=("reader", "wrong")))
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    failed = server.wait_event("login.failed", protocol="https", account="reader")
    assert failed["message"] == "wrong password"


def test_tokens(https_server):
    s = https_server
    status, _, body = split(curl("-X", "POST", f"{s.base}/token"))
    assert status == 201
    token = json.loads(body)["token"]
    bearer = ["-H", f"Authorization: Bearer {token}"]
    status, _, _ = split(curl(*bearer, f"{s.base}/files", auth=None))
    assert status == 200
    status, _, _ = split(curl("-X", "DELETE", *bearer, f"{s.base}/token", auth=None))
    assert status == 204
    status, _, _ = split(curl(*bearer, f"{s.base}/files", auth=None))
    assert status == 401


def test_route_table_walk(https_server):
    """Every operation of the OpenAPI document: public ones answer without credentials,
    every other one answers 401 without them and something other than 401/405 with them."""
    s = https_server
    status, _, body = split(curl(f"{s.base}/openapi.json", auth=None))
    assert status == 200
    doc = json.loads(body)
    assert doc["paths"]
    for path, ops in doc["paths"].items():
        url = f"https://127.0.0.1:{s.https_port}" + path.replace("{path}", "walk.txt")
        for method, op in ops.items():
            public = op.get("security") == []
            extra = ["-X", method.upper()]
            if method in ("put", "post"):
                extra += ["-d", "{}", "-H", "Content-Type: application/json"]
            status, _, _ = split(curl(*extra, url, auth=None))
            assert (status != 401) if public else (status == 401), (method, path, status)
            if not public:
                status, _, _ = split(curl(*extra, url))
                assert status not in (401, 405), (method, path, status)


def test_encoded_traversal_refused(server):
    # Nine refused paths in a row is a scan the ban engine stops (test_bans.py); here every
    # one must get its own answer, so the threshold is out of reach.
    with open(server.root / "wharf.toml", "a") as f:
        f.write("\n[ban]\nthreshold = 1000\n")
    s = start_with_alice(server)
    (s.root / "secret.txt").write_text("outside the home\n")
    for evil in ["../secret.txt", "%2e%2e/secret.txt", "%2E%2E%2Fsecret.txt", "..;/secret.txt",
                 "%c0%ae%c0%ae/secret.txt", "..%5csecret.txt",
                 "a/%2e%2e/%2e%2e/secret.txt", "%00secret.txt"]:
        status, _, body = split(curl(f"{s.base}/files/{evil}"))
        assert status == 400, (evil, status)
        assert b"outside the home" not in body
    # Decoded once, `%252e%252e` is a folder named `%2e%2e` in the home: not there, not a way up.
    status, _, body = split(curl(f"{s.base}/files/%252e%252e/secret.txt"))
    assert status == 404 and b"outside the home" not in body
    refused = s.wait_event("protocol.error", protocol="https")
    assert "path refused" in refused["message"]


def test_upload_limit_and_plain_http(server):
    port = free_port()
    with open(server.root / "wharf.toml", "a") as f:
        f.write(f"""
[[service]]
name = "http"
type = "http"
address = ["127.0.0.1", "::1"]
port = {port}
max_upload_size = 100000
""")
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    base = f"http://[::1]:{port}/api/v1"
    small = random_file(server.root / "small.bin", 50_000)
    status, _, body = split(curl("-T", str(small), f"{base}/files/small.bin"))
    assert status == 201 and json.loads(body)["sha256"] == sha256(small)
    big = random_file(server.root / "big.bin", 300_000)
    status, _, _ = split(curl("-T", str(big), f"{base}/files/big.bin"))
    assert status == 413
    # Streamed without a length: cut at the limit, nothing kept.
    status, _, _ = split(curl("--data-binary", f"@{big}", "-X", "PUT", "-H",
                              "Transfer-Encoding: chunked", f"{base}/files/piped.bin"))
    assert status == 413
    assert sorted(p.name for p in home.iterdir()) == ["small.bin"]
    server.wait_event("upload.finished", protocol="http", path="/small.bin")


def test_security_headers_redirect_and_malformed_requests(server):
    port = free_port()
    with open(server.root / "wharf.toml", "a") as f:
        f.write(f"""
[[service]]
name = "http-redirect"
type = "http"
address = ["127.0.0.1", "::1"]
port = {port}
redirect_to_https = {server.https_port}
header_timeout = 2
""")
    server.add_account("alice", password=PASSWORD)
    server.start()
    status, headers, _ = split(curl(f"http://[::1]:{port}/api/v1/files/a%20b?x=1", auth=None))
    assert status == 308
    assert headers["location"] == f"https://[::1]:{server.https_port}/api/v1/files/a%20b?x=1"
    status, headers, _ = split(curl(f"https://127.0.0.1:{server.https_port}/api/v1/files"))
    assert status == 200
    assert headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["strict-transport-security"].startswith("max-age=")
    # Oversized and malformed requests are answered by the HTTP layer and recorded.
    status, _, _ = split(curl("-H", "X-Big: " + "a" * 70_000, f"https://127.0.0.1:{server.https_port}/api/v1/files"))
    assert status == 431
    many = []
    for i in range(150):
        many += ["-H", f"X-H{i}: v"]
    status, _, _ = split(curl(*many, f"https://127.0.0.1:{server.https_port}/api/v1/files"))
    assert status == 431
    import socket
    from conftest import tls_client_context
    raw = tls_client_context().wrap_socket(socket.create_connection(("127.0.0.1", server.https_port)),
                                           server_hostname="localhost")
    raw.sendall(b"GET /api/v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    assert raw.recv(100).startswith(b"HTTP/1.1 400")
    raw.close()
    refused = server.wait_event("protocol.error", protocol="https")
    assert "request refused" in refused["message"]
    # Slowloris: headers that never end are cut at header_timeout.
    import time
    slow = socket.create_connection(("127.0.0.1", port), timeout=15)
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    started = time.time()
    try:
        while slow.recv(1000):
            pass
    except OSError:
        pass
    assert time.time() - started < 10
    slow_event = server.wait_event("protocol.error", protocol="http")
    assert "timeout" in slow_event["message"] or "timed out" in slow_event["message"]


def test_browser_session_cookie_and_csrf(https_server):
    s = https_server
    base = f"https://127.0.0.1:{s.https_port}"
    jar = s.root / "jar"
    # A login post without the form's own token (a forged form on another page) is refused.
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-d", "user=alice",
                        "-d", f"password={PASSWORD}", f"{base}/login"], capture_output=True, text=True)
    assert r.stdout == "403"
    forged = s.wait_event("command.refused", protocol="https")
    assert "login form without its CSRF token" in forged["message"]
    form = subprocess.run(["curl", "-sk", "-D", "-", "-c", str(jar), f"{base}/login"],
                          capture_output=True, text=True).stdout
    login_cookie = [l for l in form.splitlines() if l.lower().startswith("set-cookie")][0]
    for attribute in ["__Host-wharf-login=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"]:
        assert attribute in login_cookie, login_cookie
    form_token = form.split('name="csrf" value="')[1].split('"')[0]
    r = subprocess.run(["curl", "-sk", "-D", "-", "-o", "/dev/null", "-b", str(jar), "-c", str(jar),
                        "-d", f"csrf={form_token}", "-d", "user=alice", "-d", f"password={PASSWORD}",
                        f"{base}/login"], capture_output=True, text=True)
    assert r.stdout.startswith("HTTP/") and " 303" in r.stdout.splitlines()[0], r.stdout
    cookie_line = [l for l in r.stdout.splitlines() if l.lower().startswith("set-cookie")][0]
    for attribute in ["__Host-wharf=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"]:
        assert attribute in cookie_line, cookie_line
    page = subprocess.run(["curl", "-sk", "-b", str(jar), f"{base}/browse/"], capture_output=True,
                          text=True).stdout
    token = page.split('name="csrf-token" content="')[1].split('"')[0]

    def post(*extra):
        r = subprocess.run(["curl", "-sk", "-b", str(jar), "-o", "/dev/null", "-w", "%{http_code}",
                            "-X", "POST", *extra, f"{base}/api/v1/folders/new"],
                           capture_output=True, text=True)
        return int(r.stdout)

    assert post() == 403
    assert post("-H", "X-CSRF-Token: wrong") == 403
    assert post("-H", f"X-CSRF-Token: {token}", "-H", "Origin: https://evil.example") == 403
    assert post("-H", f"X-CSRF-Token: {token}", "-H", f"Origin: {base}") == 201
    assert (s.home / "new").is_dir()
    refused = s.wait_event("command.refused", protocol="https")
    assert "CSRF" in refused["message"] or "origin" in refused["message"]
    # A login form posted from another site is refused too.
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                        "Origin: https://evil.example", "-d", "user=alice", "-d", f"password={PASSWORD}",
                        f"{base}/login"], capture_output=True, text=True)
    assert r.stdout == "403"
    # A wrong method is answered 405 and recorded.
    status, _, _ = split(curl("-X", "PATCH", f"{base}/api/v1/files/x"))
    assert status == 405
    s.wait_event("protocol.error", protocol="https", message="method PATCH not allowed on /api/v1/files/x")


def test_remembered_digest_follows_changes_made_outside(https_server):
    """The upload's SHA-256 is remembered with the file; a change made behind Wharf's back
    (same size, new content) must not be answered with the old digest."""
    s = https_server
    src = random_file(s.root / "d.bin", 200_000)
    status, _, body = split(curl("-T", str(src), f"{s.base}/files/d.bin"))
    assert status == 201, body
    status, headers, _ = split(curl(f"{s.base}/files/d.bin"))
    assert headers["repr-digest"] == digest_of(src.read_bytes())
    changed = bytes(b ^ 0xFF for b in src.read_bytes())
    target = s.home / "d.bin"
    target.write_bytes(changed)
    os.utime(target, ns=(10**18, 10**18 + 1))  # a different time stamp, as any writer leaves
    status, headers, body = split(curl(f"{s.base}/files/d.bin"))
    assert body == changed and headers["repr-digest"] == digest_of(changed)
    # Asked again, the digest now remembered for the new content is the same.
    status, headers, _ = split(curl(f"{s.base}/files/d.bin"))
    assert headers["repr-digest"] == digest_of(changed)
