"""Records say what happened, to whom: a name longer than any account is recorded as typed
(never as the account its first 64 characters name), and a signature key too small to verify
anything is refused when the configuration is loaded, not reported file after file as a bad
signature."""

import ftplib
import subprocess

import paramiko
import pytest

PASSWORD = "records-Pass-4821"


def test_a_long_login_name_is_never_recorded_as_another_account(server):
    account = "a" * 64
    server.add_account(account, password=PASSWORD)
    server.add_ftp_service()
    server.start()
    typed = account + "b"
    with pytest.raises(ftplib.error_perm):
        server.ftp(typed, PASSWORD)
    with pytest.raises(paramiko.AuthenticationException):
        server.paramiko(typed, password=PASSWORD)
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{typed}:{PASSWORD}",
                        f"https://127.0.0.1:{server.https_port}/api/v1/files"],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout == "401"
    for protocol in ("ftp", "ssh", "https"):
        server.wait_event("login.failed", protocol=protocol)
    failed = [e for e in server.events() if e["name"] == "login.failed"]
    assert {e["protocol"] for e in failed} >= {"ftp", "ssh", "https"}, failed
    assert all(e["account"] == typed for e in failed), failed
    assert not [e for e in server.events() if e.get("account") == account and e.get("protocol") != "admin"], \
        "a login recorded as the real account"


def test_a_signature_key_under_2048_bits_is_refused_at_load(server, tmp_path):
    key = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
                         capture_output=True, check=True).stdout
    (server.root / "old.pub.pem").write_bytes(
        subprocess.run(["openssl", "pkey", "-pubout"], input=key, capture_output=True, check=True).stdout)
    with open(server.root / "wharf.toml", "a") as f:
        f.write('\n[[handler]]\nname = "sig"\non = ["upload.finished"]\n\n'
                '[handler.verify-signature]\nkeys = ["old.pub.pem"]\n')
    r = server.wharf("check-config")
    assert r.returncode != 0
    assert "old.pub.pem: the RSA key is smaller than 2048 or larger than 8192 bits" in r.stdout + r.stderr, \
        r.stdout + r.stderr


def test_replacing_a_file_is_recorded_as_overwrite_on_every_protocol(server):
    home = server.add_account("otto", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    local = server.root / "local.txt"
    local.write_text("new content\n")
    for name in ("s.txt", "f.txt", "h.txt"):
        (home / name).write_text("old\n")
    server.sftp("otto", f"put {local} s.txt\nput {local} s-new.txt\n")
    ftps = server.ftp_client("ftps", "otto", PASSWORD)
    with open(local, "rb") as f:
        ftps.storbinary("STOR f.txt", f)
    with open(local, "rb") as f:
        ftps.storbinary("STOR f-new.txt", f)
    ftps.quit()
    for name in ("h.txt", "h-new.txt"):
        r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"otto:{PASSWORD}",
                            "-T", str(local), f"https://127.0.0.1:{server.https_port}/api/v1/files/{name}"],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout in ("200", "201"), r.stdout
    for name in ("s.txt", "f.txt", "h.txt", "s-new.txt", "f-new.txt", "h-new.txt"):
        finished = server.wait_event("upload.finished", path=f"/{name}")
        started = [e for e in server.events() if e["name"] == "upload.started" and e["path"] == f"/{name}"]
        expected = "create" if "new" in name else "overwrite"
        assert finished["attrs"]["mode"] == expected, (name, finished)
        assert [e["attrs"]["mode"] for e in started] == [expected], (name, started)
        assert (home / name).read_text() == "new content\n"
