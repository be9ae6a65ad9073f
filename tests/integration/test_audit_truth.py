"""The audit trail says what happened: a REST download that sent every byte is finished, one
cut short is a failure with the bytes sent, and an RFC-conformant WebDAV refusal is an
ordinary refusal, never a protocol error that counts toward a ban."""

import subprocess

from conftest import random_file

PASSWORD = "audit-truth-123"


def test_rest_downloads_are_recorded_as_they_ended(server):
    home = server.add_account("rita", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    small = random_file(home / "small.bin", 1000)
    big = random_file(home / "big.bin", 8 << 20)
    base = f"https://127.0.0.1:{server.https_port}/api/v1/files"
    # The README's own download, whole, then a range.
    for args in ([f"{base}/small.bin", "-o", str(server.root / "got.bin")],
                 ["-r", "0-99", f"{base}/big.bin", "-o", str(server.root / "part.bin")]):
        r = subprocess.run(["curl", "-sk", "-u", f"rita:{PASSWORD}", *args], capture_output=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
    assert (server.root / "got.bin").read_bytes() == small.read_bytes()
    # Cut short: at most 64 KiB/s for one second of an 8 MiB file.
    subprocess.run(["curl", "-sk", "-u", f"rita:{PASSWORD}", "--limit-rate", "64K", "--max-time", "1",
                    f"{base}/big.bin", "-o", "/dev/null"], capture_output=True, timeout=60)
    server.wait_event("download.failed", path="/big.bin")
    events = [e for e in server.events() if e["name"].startswith("download.")]
    finished = [e for e in events if e["name"] == "download.finished"]
    assert any(e["path"] == "/small.bin" and e["bytes"] == 1000 for e in finished), events
    assert any(e["path"] == "/big.bin" and e["bytes"] == 100 for e in finished), events
    failed = [e for e in events if e["name"] == "download.failed"]
    assert len(failed) == 1 and failed[0]["path"] == "/big.bin", failed
    assert 0 < failed[0]["bytes"] < 8 << 20


def test_webdav_refusals_are_not_protocol_errors(server):
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=all", check=True)
    home = server.add_account("walt", password=PASSWORD, groups=["partners"])
    server.start()
    (home / "exists").mkdir(parents=True)
    base = f"https://127.0.0.1:{server.https_port}/dav"
    # More than enough refusals to reach the ban threshold if they counted.
    for _ in range(20):
        r = subprocess.run(["curl", "-sk", "-u", f"walt:{PASSWORD}", "-o", "/dev/null", "-w", "%{http_code}",
                            "-X", "MKCOL", f"{base}/exists"], capture_output=True, text=True, timeout=60)
        assert r.stdout == "405", r.stdout
    r = subprocess.run(["curl", "-sk", "-u", f"walt:{PASSWORD}", "-o", "/dev/null", "-w", "%{http_code}",
                        f"{base}/exists/"], capture_output=True, text=True, timeout=60)
    assert r.stdout != "000"
    names = [e["name"] for e in server.events()]
    assert "protocol.error" not in names and "ban.added" not in names
    # A method no route takes is still one.
    r = subprocess.run(["curl", "-sk", "-u", f"walt:{PASSWORD}", "-o", "/dev/null", "-w", "%{http_code}",
                        "-X", "PATCH", f"https://127.0.0.1:{server.https_port}/api/v1/files/x"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "405"
    server.wait_event("protocol.error")


def test_cli_records_name_the_operating_system_user(server):
    import os
    import pwd
    from conftest import BIN
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "SUDO_USER", "LOGNAME")}
    subprocess.run([str(BIN), "--config", str(server.root / "wharf.toml"), "group", "add", "ops"],
                   env=env, check=True, capture_output=True, timeout=60)
    created = [e for e in server.events() if e["name"] == "group.created"]
    assert created[-1]["attrs"]["operator"] == pwd.getpwuid(os.getuid()).pw_name
