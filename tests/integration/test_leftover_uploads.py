"""Uploads cut by a `kill -9` of the server leave temporary files; the sweep at start (and
every 10 minutes) removes those nobody owns and nobody wrote to for an hour, records each,
and never touches anything else."""

import ftplib
import os
import signal
import subprocess
import threading
import time

from conftest import ReusingFTP_TLS, random_file, tls_client_context

PASSWORD = "leftover-pass-123"
PREFIX = ".wharf-part-"


def temps(home):
    return sorted(p for p in home.rglob(f"{PREFIX}*"))


def ftps_upload(server, src):
    try:
        client = ReusingFTP_TLS(context=tls_client_context())
        client.connect("127.0.0.1", server.ftps_port, timeout=30)
        client.login("kim", PASSWORD)
        client.prot_p()
        with open(src, "rb") as f:
            client.storbinary("STOR /in/ftps.bin", f, blocksize=8192,
                              callback=lambda _: time.sleep(0.01))
    except (ftplib.Error, OSError, EOFError):
        pass


def test_leftovers_of_a_killed_server_are_swept(server):
    home = server.add_account("kim", password=PASSWORD, key=True)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "in").mkdir()
    src = random_file(server.root / "big.bin", 64 << 20)
    # Three uploads in flight, slowed down so that the kill finds them half-way.
    sftp = subprocess.Popen(["sftp", *server.ssh_opts(), "-P", str(server.port), "-l", "2000",
                             "-b", "-", "kim@127.0.0.1"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    sftp.stdin.write(f"put {src} /in/sftp.bin\n")
    sftp.stdin.flush()
    curl = subprocess.Popen(["curl", "-sk", "-u", f"kim:{PASSWORD}", "--limit-rate", "2M", "-T", str(src),
                             f"https://127.0.0.1:{server.https_port}/api/v1/files/in/https.bin"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ftps = threading.Thread(target=ftps_upload, args=(server, src), daemon=True)
    ftps.start()
    deadline = time.time() + 30
    while time.time() < deadline and len(temps(home)) < 3:
        time.sleep(0.2)
    left = temps(home)
    assert len(left) == 3, left
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    for client in (sftp, curl):
        client.kill()
        client.wait()
    ftps.join(timeout=30)
    assert temps(home) == left
    sizes = {"/" + str(p.relative_to(server.homes)): p.stat().st_size for p in left}
    # An hour later (as far as the files can tell) they are leftovers; a fresh temporary
    # file (another node's upload, say) and the account's own files are not.
    hour_ago = time.time() - 3700
    for path in left:
        os.utime(path, (hour_ago, hour_ago))
    fresh = home / "in" / f"{PREFIX}fresh"
    fresh.write_bytes(b"in flight elsewhere")
    own = home / "in" / "keep.wharf-part-like.txt"
    own.write_bytes(b"mine")
    os.utime(own, (hour_ago, hour_ago))
    server.start()
    deadline = time.time() + 20
    while time.time() < deadline and temps(home) != [fresh]:
        time.sleep(0.2)
    assert temps(home) == [fresh]
    assert own.read_bytes() == b"mine"
    removed = [e for e in server.events() if e["name"] == "upload.leftover_swept"]
    assert sorted(e["path"] for e in removed) == sorted(
        "/" + str(p.relative_to(server.homes)) for p in left)
    assert all(e["attrs"]["root"] == str(server.homes.resolve()) or e["attrs"]["root"] == str(server.homes)
               for e in removed)
    assert {e["path"]: e["bytes"] for e in removed} == sizes
