"""Attacks on how uploads are opened and streamed, by a partner account with real clients:
an append-only account writing over a file's earlier bytes (SFTP, WebDAV), resume answers
that tell a file's size or digest to an account that may not look, silent probes of names,
WebDAV bodies cut short or past the service's bounds, offsets at the end of the 64-bit range,
and bodies sent a byte at a time."""

import base64
import ftplib
import io
import socket
import ssl
import subprocess
import time

import paramiko
import pytest

PASSWORD = "open-attack-Secret-7"
EARLIER = b"EARLIER-CONTENT-" * 64  # 1024 bytes


@pytest.fixture
def partners(server):
    config = server.root / "wharf.toml"
    text = config.read_text()
    text = text.replace("max_upload_size = 10737418240", "max_upload_size = 3000000")
    text = text.replace("body_timeout = 60", "body_timeout = 3")
    config.write_text(text)
    server.wharf("group", "add", "appenders", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=write,append", check=True)
    server.wharf("group", "add", "full", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=all", check=True)
    anna = server.add_account("anna", password=PASSWORD, groups=["appenders"])
    fred = server.add_account("fred", password=PASSWORD, groups=["full"])
    server.start()
    for home in (anna, fred):
        home.mkdir(parents=True, exist_ok=True)
        (home / "earlier.txt").write_bytes(EARLIER)
    return anna, fred


def dav(server, user, *args):
    r = subprocess.run(["curl", "-sk", "-u", f"{user}:{PASSWORD}", "-o", "/dev/null", "-w", "%{http_code}",
                        *args], capture_output=True, text=True, timeout=60)
    return r.stdout


def sftp(server, user):
    transport = paramiko.Transport(("127.0.0.1", server.port))
    transport.connect(username=user, password=PASSWORD)
    return transport, paramiko.SFTPClient.from_transport(transport)


def test_append_only_cannot_write_over_earlier_bytes(server, partners):
    anna, _ = partners
    transport, client = sftp(server, "anna")
    try:
        # Opened for writing without truncation: continuing is allowed, writing over not.
        with pytest.raises(IOError):
            with client.open("/earlier.txt", "r+") as f:
                f.write(b"OWNED")
        # Appending still works.
        with client.open("/earlier.txt", "a") as f:
            f.write(b"+tail")
    finally:
        transport.close()
    assert (anna / "earlier.txt").read_bytes() == EARLIER + b"+tail"
    body = server.root / "c5"
    body.write_bytes(b"HACKD")
    base = f"https://127.0.0.1:{server.https_port}/dav"
    status = dav(server, "anna", "-H", "Content-Range: bytes 0-4/*", "-T", str(body), f"{base}/earlier.txt")
    assert status == "403", status
    assert (anna / "earlier.txt").read_bytes() == EARLIER + b"+tail"


def test_resume_answers_say_nothing_of_a_file_the_account_may_not_look_at(server, partners):
    anna, _ = partners
    client = server.ftp_client("ftps", "anna", PASSWORD)
    try:
        with pytest.raises(ftplib.error_perm) as refused:
            client.storbinary("STOR earlier.txt", io.BytesIO(b"Z"), rest=5)
        assert str(refused.value).startswith("554"), refused.value
        assert "1024" not in str(refused.value)
        # At the right offset it continues the file; the reply gives no digest of bytes
        # the account did not send and may not read.
        reply = client.storbinary("STOR earlier.txt", io.BytesIO(b"!"), rest=len(EARLIER))
        assert reply.startswith("226") and "SHA-256" not in reply, reply
    finally:
        client.quit()
    assert (anna / "earlier.txt").read_bytes() == EARLIER + b"!"


def test_probing_names_through_opens_is_recorded(server, partners):
    transport, client = sftp(server, "anna")
    try:
        # Open for writing without CREAT: "no such file", created nothing.
        with pytest.raises(IOError):
            client.open("/absent.txt", "r+")
    finally:
        transport.close()
    failed = [e for e in server.events() if e["name"] == "upload.failed" and e["path"] == "/absent.txt"]
    assert failed, [e["name"] for e in server.events()]


def test_webdav_bodies_cut_short_or_past_the_bounds_are_not_kept(server, partners):
    _, fred = partners
    base = f"https://127.0.0.1:{server.https_port}/dav"
    ten = server.root / "ten"
    ten.write_bytes(b"0123456789")
    # A body announcing 1000 bytes that brings 10.
    dav(server, "fred", "-H", "Transfer-Encoding: chunked", "-H", "Content-Range: bytes 0-999/*",
        "-T", str(ten), f"{base}/partial.bin")
    assert not (fred / "partial.bin").exists()
    # Larger than max_upload_size: declared, or streamed without a length.
    big = server.root / "big"
    big.write_bytes(b"x" * 4_000_000)
    assert dav(server, "fred", "-T", str(big), f"{base}/big.bin") == "413"
    dav(server, "fred", "-H", "Transfer-Encoding: chunked", "-T", str(big), f"{base}/big2.bin")
    assert not (fred / "big.bin").exists() and not (fred / "big2.bin").exists()
    # A body that stalls is given up after body_timeout.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", server.https_port), timeout=30)
    conn = context.wrap_socket(raw, server_hostname="localhost")
    auth = base64.b64encode(f"fred:{PASSWORD}".encode()).decode()
    conn.sendall((f"PUT /dav/stalled.bin HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\n"
                  "Content-Length: 100000\r\n\r\n").encode() + b"s" * 50_000)
    deadline = time.time() + 30
    while time.time() < deadline:
        if any(e["name"] == "upload.failed" and e["path"] == "/stalled.bin" for e in server.events()):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the stalled WebDAV upload was not given up")
    conn.close()
    assert not (fred / "stalled.bin").exists()
    refusals = [e.get("message") or "" for e in server.events() if e["name"] == "command.refused"]
    assert any("stalled" in r for r in refusals), refusals
    assert any("max_upload_size" in r for r in refusals), refusals
    assert not any(e["name"] == "upload.finished" and e["path"] in ("/partial.bin", "/big.bin", "/big2.bin",
                                                                     "/stalled.bin") for e in server.events())


def test_offsets_at_the_end_of_the_range_are_refused(server, partners):
    _, fred = partners
    base = f"https://127.0.0.1:{server.https_port}/dav"
    one = server.root / "one"
    one.write_bytes(b"W")
    top = 2**64 - 1
    status = dav(server, "fred", "-H", f"Content-Range: bytes {top}-{top}/*", "-T", str(one), f"{base}/earlier.txt")
    assert status not in ("200", "201", "204"), status
    assert (fred / "earlier.txt").read_bytes() == EARLIER
    transport, client = sftp(server, "fred")
    try:
        with pytest.raises(IOError):
            with client.open("/edge.bin", "w") as f:
                f.write(b"head")
                f.seek(top)
                f.write(b"W")
    finally:
        transport.close()
    assert not (fred / "edge.bin").exists() or (fred / "edge.bin").read_bytes() != b"headW"


def vm_rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_body_sent_a_byte_at_a_time_holds_no_more_than_a_buffer(server, partners):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    auth = base64.b64encode(f"fred:{PASSWORD}".encode()).decode()
    # The first upload sets up what every later one shares (threads, caches): not counted.
    warm = server.root / "warm"
    warm.write_bytes(b"w" * 300_000)
    assert dav(server, "fred", "-T", str(warm), f"https://127.0.0.1:{server.https_port}/api/v1/files/warm.bin") == "201"
    time.sleep(1)
    before = vm_rss_kib(server.proc.pid)
    held = []
    for n in range(3):
        raw = socket.create_connection(("127.0.0.1", server.https_port), timeout=30)
        conn = context.wrap_socket(raw, server_hostname="localhost")
        conn.sendall((f"PUT /api/v1/files/tiny{n}.bin HTTP/1.1\r\nHost: localhost\r\n"
                      f"Authorization: Basic {auth}\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        conn.sendall(b"1\r\nA\r\n" * 200_000)
        held.append(conn)
    # Let the server take every chunk in.
    deadline = time.time() + 20
    while time.time() < deadline and not all(
            e for e in [any(ev["name"] == "upload.started" and ev["path"] == f"/tiny{n}.bin"
                            for ev in server.events()) for n in range(3)]):
        time.sleep(0.3)
    time.sleep(2)
    grown = vm_rss_kib(server.proc.pid) - before
    for conn in held:
        conn.close()
    # Three held uploads of 200,000 one-byte chunks: a buffer each, not a heap piece per byte.
    assert grown < 3 * 4096, f"server grew by {grown} KiB"


def test_a_webdav_put_onto_a_folder_is_refused_not_a_failure(server, partners):
    _, fred = partners
    (fred / "folder").mkdir()
    body = server.root / "one"
    body.write_bytes(b"1")
    status = dav(server, "fred", "-T", str(body), f"https://127.0.0.1:{server.https_port}/dav/folder")
    assert status.startswith("4"), status
    assert (fred / "folder").is_dir()
