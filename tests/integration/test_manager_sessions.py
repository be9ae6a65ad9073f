"""Sessions open now, on every protocol, as the Manager shows them (the admin API and the
console): an SFTP upload in flight with its bytes, an FTP login, a WebDAV login; an auditor
sees them and cannot disconnect; an operator disconnects each, the client is cut, the upload
in flight fails and leaves nothing under its final name, and every disconnect is recorded
with who made it."""

import ftplib
import subprocess
import time

import pytest

from manager_client import Browser, api
from test_manager import PASSWORD, add_admin, token


def sessions(server, bearer, host="127.0.0.1"):
    status, body = api(server, "GET", "/api/v1/sessions", bearer, host=host)
    assert status == 200, body
    return body["sessions"]


def wait_for(condition, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_sessions_are_listed_and_disconnected_on_every_protocol(server):
    server.add_account("mover", password="carrier pass phrase 9")
    server.add_ftp_service()
    add_admin(server, "oscar", "operator")
    add_admin(server, "aude", "auditor")
    operator = token(server, "oscar-ci", "oscar", "operator")
    auditor = token(server, "aude-ci", "aude", "auditor")
    server.start()

    # SFTP (paramiko): an upload kept open, its first bytes written.
    ssh = server.paramiko("mover")
    sftp = ssh.open_sftp()
    upload = sftp.open("/slow.bin", "wb")
    upload.set_pipelined(False)
    upload.write(b"x" * 100_000)
    upload.flush()
    # FTP (ftplib, plain service): logged in.
    ftp = server.ftp("mover", "carrier pass phrase 9")
    # WebDAV (curl, Basic): one request; the login is kept for the next.
    dav = ["curl", "-sk", "-u", "mover:carrier pass phrase 9", "-o", "/dev/null", "-w", "%{http_code}"]
    url = f"https://127.0.0.1:{server.https_port}/dav/"
    assert subprocess.run([*dav, "-X", "PROPFIND", "-H", "Depth: 1", url],
                          capture_output=True, text=True, timeout=30).stdout == "207"

    def open_by_protocol():
        found = {s["protocol"]: s for s in sessions(server, auditor, host="::1")
                 if s["account"] == "mover"}
        return found if {"sftp", "ftp", "webdav"} <= found.keys() else None

    found = wait_for(open_by_protocol)
    moving = found["sftp"]["transfers"]
    assert [(t["direction"], t["path"]) for t in moving] == [("upload", "/slow.bin")], moving
    assert moving[0]["bytes"] >= 100_000
    assert found["sftp"]["remote"].startswith("127.0.0.1:") and found["sftp"]["service"] == "ssh"
    assert found["ftp"]["service"] == "ftp-plain" and found["ftp"]["transfers"] == []
    status, one = api(server, "GET", f"/api/v1/sessions/{found['ftp']['id']}", auditor)
    assert status == 200 and one["account"] == "mover"

    # The console lists them too, with the transfer.
    browser = Browser(server)
    browser.login("aude", PASSWORD)
    status, _, page, _ = browser.request("GET", "/sessions")
    assert status == 200 and found["sftp"]["id"] in page and "/slow.bin" in page
    assert "disconnect</button>" not in page  # an auditor is offered no button
    status, _, page, _ = browser.request("GET", "/")
    assert "/slow.bin" in page and "Transfers in flight" in page

    # An auditor may look, not cut; an unknown session is a 404.
    status, body = api(server, "DELETE", f"/api/v1/sessions/{found['sftp']['id']}", auditor)
    assert status == 403, body
    status, body = api(server, "DELETE", "/api/v1/sessions/no-such-session", operator)
    assert status == 404 and "no session" in body["error"]
    assert found["sftp"]["id"] in [s["id"] for s in sessions(server, auditor)]

    # The operator disconnects the SFTP session: the upload in flight fails, the client is cut.
    status, body = api(server, "DELETE", f"/api/v1/sessions/{found['sftp']['id']}", operator,
                       host="::1")
    assert status == 200 and body["disconnected"]["account"] == "mover", body
    with pytest.raises(Exception):
        upload.write(b"y" * 100_000)
        upload.flush()
        upload.close()
    failed = server.wait_event("upload.failed", account="mover", path="/slow.bin")
    assert failed["message"] == "disconnected by an administrator", failed
    assert not (server.homes / "mover" / "slow.bin").exists()
    done = server.wait_event("session.disconnected")
    assert done["attrs"]["admin"] == "oscar" and done["attrs"]["token"] == "oscar-ci"
    assert done["attrs"]["account"] == "mover" and done["attrs"]["target"] == found["sftp"]["id"]
    assert done["remote"].startswith("[::1]:"), done
    closed = server.wait_event("connection.closed", protocol="ssh", account="mover")
    assert closed["message"] == "disconnected by an administrator", closed

    # FTP, from the console's button (an operator's browser session with its CSRF token).
    console = Browser(server, host="::1")
    console.login("oscar", PASSWORD)
    console.request("GET", "/sessions")
    status, headers, _, _ = console.request(
        "POST", "/sessions", form={"csrf": console.csrf, "id": found["ftp"]["id"]})
    assert status == 303 and headers["Location"] == "/sessions"
    with pytest.raises((ftplib.error_temp, EOFError, ConnectionError)):
        # The server said 421 and closed; the reply, or the closed socket, reaches the client.
        ftp.voidcmd("NOOP")
        ftp.voidcmd("NOOP")
    closed = server.wait_event("connection.closed", protocol="ftp", account="mover")
    assert closed["message"] == "disconnected by an administrator", closed

    # WebDAV: the kept login ends at once (it leaves the list without waiting for a
    # request); disconnecting it again finds nothing; its next request logs in afresh.
    webdav = found["webdav"]["id"]
    status, body = api(server, "DELETE", f"/api/v1/sessions/{webdav}", operator)
    assert status == 200, body
    wait_for(lambda: webdav not in [s["id"] for s in sessions(server, auditor)])
    status, body = api(server, "DELETE", f"/api/v1/sessions/{webdav}", operator)
    assert status == 404, body
    assert subprocess.run([*dav, "-X", "PROPFIND", "-H", "Depth: 1", url],
                          capture_output=True, text=True, timeout=30).stdout == "207"
    again = [s for s in sessions(server, auditor) if s["protocol"] == "webdav" and s["account"] == "mover"]
    assert again and again[0]["id"] != webdav, again

    left = {s["protocol"] for s in sessions(server, auditor) if s["account"] == "mover"}
    assert left == {"webdav"}, left
    recorded = [e for e in server.events() if e["name"] == "session.disconnected"]
    assert len(recorded) == 3 and {e["attrs"]["admin"] for e in recorded} == {"oscar"}
    ssh.close()


def test_disconnect_ends_an_ssh_client_that_stopped_reading(server):
    """An OpenSSH `sftp` download whose client is frozen (SIGSTOP, so it reads nothing):
    the disconnect still ends the connection, its session leaves the list, and the
    download's record says why."""
    import os
    import signal

    home = server.add_account("mover", password="carrier pass phrase 9")
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "big.bin", "wb") as f:
        f.write(os.urandom(1 << 20) * 64)
    add_admin(server, "oscar", "operator")
    operator = token(server, "oscar-ci", "oscar", "operator")
    server.start()
    client = subprocess.Popen(
        ["sftp", *server.ssh_opts(), "-P", str(server.port), "mover@127.0.0.1:/big.bin",
         str(server.root / "got.bin")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        moving = wait_for(lambda: [s for s in sessions(server, operator)
                                   if s["protocol"] == "sftp" and s["transfers"]], timeout=20)[0]
        os.killpg(client.pid, signal.SIGSTOP)
        time.sleep(1)
        status, body = api(server, "DELETE", f"/api/v1/sessions/{moving['id']}", operator)
        assert status == 200, body
        wait_for(lambda: moving["id"] not in [s["id"] for s in sessions(server, operator)], timeout=20)
        failed = server.wait_event("download.failed", account="mover", path="/big.bin")
        assert failed["message"] == "disconnected by an administrator", failed
    finally:
        os.killpg(client.pid, signal.SIGKILL)
        client.wait()


ASYNCSSH_SLOW_READER = r"""
import asyncio, sys
import asyncssh

async def main(port, key, out):
    async with asyncssh.connect("127.0.0.1", port, username="mover", client_keys=[key],
                                known_hosts=None) as conn:
        async with conn.start_sftp_client() as sftp:
            async with sftp.open("/big.bin", "rb") as f:
                with open(out, "wb") as o:
                    while True:
                        chunk = await f.read(32768)
                        if not chunk:
                            return
                        o.write(chunk)
                        await asyncio.sleep(0.05)

try:
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
except Exception as e:
    print(type(e).__name__, e, file=sys.stderr)
    sys.exit(3)
"""

SLOW_FILE_READER = r"""
import sys, time
try:
    with open(sys.argv[1], "rb") as f, open(sys.argv[2], "wb") as o:
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            o.write(chunk)
            time.sleep(0.05)
except OSError as e:
    print(type(e).__name__, e, file=sys.stderr)
    sys.exit(3)
"""


def test_disconnect_ends_other_clients_downloads(server, tmp_path):
    """lftp (GnuTLS, explicit FTPS), rclone (Go's SFTP), asyncssh and a file read through an
    sshfs mount, each in the middle of a slow download: each disconnect ends that client's
    transfer with an error (no client reconnects on its own here), its session leaves the
    list, and the download's record says why."""
    import os
    import shutil
    import sys

    pass_phrase = "carrier pass phrase 9"
    home = server.add_account("mover", password=pass_phrase)
    home.mkdir(parents=True, exist_ok=True)
    size = 64 << 20
    with open(home / "big.bin", "wb") as f:
        f.write(os.urandom(1 << 20) * 64)
    add_admin(server, "oscar", "operator")
    operator = token(server, "oscar-ci", "oscar", "operator")
    server.start()
    obscured = subprocess.run(["rclone", "obscure", pass_phrase], capture_output=True,
                              text=True, check=True).stdout.strip()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    clients = {
        "lftp": ["lftp", "-c",
                 "set ssl:verify-certificate no; set ftp:ssl-force true; set net:max-retries 1; "
                 "set net:limit-rate 262144; set xfer:clobber true; "
                 f"open -u 'mover,{pass_phrase}' -p {server.ftps_port} 127.0.0.1; "
                 f"get big.bin -o {tmp_path / 'lftp.bin'}"],
        "rclone": ["rclone", "copyto", "--bwlimit", "256k", "--retries", "1",
                   "--low-level-retries", "1",
                   f":sftp,host=127.0.0.1,port={server.port},user=mover,pass={obscured}:big.bin",
                   str(tmp_path / "rclone.bin")],
        "asyncssh": [sys.executable, "-c", ASYNCSSH_SLOW_READER, str(server.port),
                     str(server.key), str(tmp_path / "asyncssh.bin")],
    }
    sshfs_ok = shutil.which("sshfs") and os.path.exists("/dev/fuse")
    if sshfs_ok:
        subprocess.run(["sshfs", "mover@127.0.0.1:/", str(mnt), "-p", str(server.port),
                        "-o", f"IdentityFile={server.key}",
                        "-o", "StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,"
                              "BatchMode=yes,LogLevel=ERROR"],
                       check=True, timeout=30)
        clients["sshfs"] = [sys.executable, "-c", SLOW_FILE_READER, str(mnt / "big.bin"),
                            str(tmp_path / "sshfs.bin")]
    env = dict(os.environ, RCLONE_CONFIG=str(tmp_path / "rclone.conf"))
    handled = set()
    try:
        for name, cmd in clients.items():
            client = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True, env=env, start_new_session=True)
            try:
                moving = wait_for(lambda: [s for s in sessions(server, operator)
                                           if s["id"] not in handled
                                           and [t for t in s["transfers"] if t["path"] == "/big.bin"]],
                                  timeout=30)[0]
                handled.add(moving["id"])
                failures = len([e for e in server.events() if e["name"] == "download.failed"])
                status, body = api(server, "DELETE", f"/api/v1/sessions/{moving['id']}", operator)
                assert status == 200, (name, body)
                try:
                    code = client.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    raise AssertionError(f"{name} still runs after its session was disconnected")
                assert code != 0, f"{name} finished as if nothing happened: {client.stderr.read()}"
                got = tmp_path / f"{name}.bin"
                assert not got.exists() or got.stat().st_size < size, name
                wait_for(lambda: moving["id"] not in [s["id"] for s in sessions(server, operator)])
                failed = wait_for(lambda: [e for e in server.events()
                                           if e["name"] == "download.failed"][failures:])
                assert failed[0]["message"] == "disconnected by an administrator", (name, failed)
                assert failed[0]["protocol"] == moving["protocol"], (name, failed[0])
            finally:
                if client.poll() is None:
                    os.killpg(client.pid, 9)
                    client.wait()
    finally:
        if sshfs_ok:
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
    recorded = [e for e in server.events() if e["name"] == "session.disconnected"]
    assert len(recorded) == len(clients)
