"""One-time codes (RFC 6238) as a second factor: enrolment by the CLI, SSH
keyboard-interactive after the password or key (paramiko), the code appended to the
password over FTPS and HTTPS, recovery codes, replay refusal, and group requirements."""

import base64
import ftplib
import hashlib
import hmac
import json
import struct
import subprocess
import time

import paramiko
import pytest

from logins import ftps_login, https_status

PASSWORD = "correct horse battery staple"


def totp(secret, at=None, step_offset=0):
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    step = int((at or time.time()) // 30) + step_offset
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def enrol(server, name):
    out = server.wharf("account", "totp", "enable", name, "--json", check=True).stdout
    return json.loads(out)


def scp_up(server, user, password=None, code=None, key=False):
    """Uploads a file with OpenSSH's scp, answering its prompts (password, then the
    verification code) from a scripted SSH_ASKPASS; returns scp's exit status and the
    prompts it was asked."""
    askpass = server.root / "askpass.sh"
    log = server.root / "prompts.log"
    askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$1" >> "$WHARF_PROMPTS"\n'
                       'case "$1" in\n  *assword*) printf "%s\\n" "$WHARF_PASSWORD";;\n'
                       '  *) printf "%s\\n" "$WHARF_CODE";;\nesac\n')
    askpass.chmod(0o700)
    log.write_text("")
    src = server.root / "up.txt"
    src.write_text("second factor\n")
    first = "publickey" if key else "password"
    cmd = ["scp", "-P", str(server.port), "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
           "-o", f"PreferredAuthentications={first},keyboard-interactive",
           "-o", "NumberOfPasswordPrompts=1"]
    cmd += ["-i", str(server.key)] if key else ["-o", "PubkeyAuthentication=no"]
    cmd += [str(src), f"{user}@127.0.0.1:/up.txt"]
    env = {"PATH": "/usr/bin:/bin", "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
           "DISPLAY": ":0", "WHARF_PROMPTS": str(log), "WHARF_PASSWORD": password or "",
           "WHARF_CODE": code or ""}
    result = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60)
    return result.returncode, [p for p in log.read_text().splitlines() if p]


def fresh_code(secret, used):
    """A code for a step not used yet in this test: this step's, else the next one's (the
    server accepts one step of clock drift), else it waits for time to move on."""
    while True:
        for offset in (0, 1):
            step = int(time.time() // 30) + offset
            if all(step > u for u in used):
                used.add(step)
                return totp(secret, step_offset=offset)
        time.sleep(1)


def test_ssh_asks_for_the_code_after_the_password_or_key(server):
    server.add_account("tara", password=PASSWORD)
    enrolled = enrol(server, "tara")
    assert enrolled["uri"].startswith("otpauth://totp/Wharf%20%28wharf-1%29:tara?secret=")
    assert len(enrolled["recovery_codes"]) == 10
    server.start()
    secret, used = enrolled["secret"], set()

    # The password alone is a partial success: only keyboard-interactive may follow.
    sock = paramiko.Transport(("127.0.0.1", server.port))
    sock.start_client(timeout=10)
    assert sock.auth_password("tara", PASSWORD) == ["keyboard-interactive"]
    assert not sock.is_authenticated()
    # paramiko then asks for the service again and answers the prompt: in.
    sock.auth_interactive("tara", lambda title, text, prompts: [fresh_code(secret, used)])
    assert sock.is_authenticated()
    sock.close()
    # Password, then the code (OpenSSH asks for it after the password): in.
    code = fresh_code(secret, used)
    status, prompts = scp_up(server, "tara", PASSWORD, code)
    assert status == 0, prompts
    assert prompts[0].endswith("password: ") and prompts[1].endswith("Verification code: ")
    assert (server.homes / "tara" / "up.txt").read_text() == "second factor\n"
    ok = server.wait_event("login.succeeded", account="tara")
    assert ok["attrs"]["second_factor"] == "totp" and ok["attrs"]["method"] == "password"
    # The same code again: refused (each step's code works once).
    status, _ = scp_up(server, "tara", PASSWORD, code)
    assert status != 0
    failed = server.wait_event("login.failed", account="tara")
    # Recorded with its first factor, as login.succeeded is; the code step says so.
    assert failed["attrs"]["cause"] == "wrong-code" and failed["attrs"]["method"] == "password"
    assert failed["attrs"]["second_factor"] == "totp"
    # A key is a first factor too.
    status, prompts = scp_up(server, "tara", code=fresh_code(secret, used), key=True)
    assert status == 0 and len(prompts) == 1 and prompts[0].endswith("Verification code: ")
    # A recovery code works once.
    recovery = enrolled["recovery_codes"][0]
    assert scp_up(server, "tara", PASSWORD, recovery)[0] == 0
    assert scp_up(server, "tara", PASSWORD, recovery)[0] != 0
    # keyboard-interactive without a first factor leads nowhere.
    sock = paramiko.Transport(("127.0.0.1", server.port))
    sock.start_client(timeout=10)
    with pytest.raises(paramiko.AuthenticationException):
        sock.auth_interactive("tara", lambda t, i, p: [totp(secret) for _ in p])
    assert not sock.is_authenticated()
    sock.close()


def test_wrong_codes_count_towards_max_auth_tries(server):
    server.add_account("tom", password=PASSWORD)
    enrol(server, "tom")
    config = server.root / "wharf.toml"
    text = config.read_text()
    assert "max_auth_tries = 6" in text
    text = text.replace("max_auth_tries = 6", "max_auth_tries = 3", 1)
    config.write_text(text.replace("login_grace_time = 20", "login_grace_time = 60", 1))
    server.start()
    askpass = server.root / "askpass-wrong.sh"
    askpass.write_text('#!/bin/sh\ncase "$1" in\n  *assword*) printf "%s\\n" "$WHARF_PASSWORD";;\n'
                       '  *) echo 000000;;\nesac\n')
    askpass.chmod(0o700)
    env = {"PATH": "/usr/bin:/bin", "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
           "DISPLAY": ":0", "WHARF_PASSWORD": PASSWORD}
    # The client would go on guessing (20 prompts); the server ends the connection.
    result = subprocess.run(
        ["sftp", "-P", str(server.port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no",
         "-o", "PreferredAuthentications=password,keyboard-interactive",
         "-o", "NumberOfPasswordPrompts=20", "tom@127.0.0.1"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Too many authentication attempts" in result.stderr, result.stderr
    wrong = [e for e in server.events()
             if e["name"] == "login.failed" and e["account"] == "tom"]
    # At most max_auth_tries codes were tried (the client's first `none` probe counts too).
    assert 1 <= len(wrong) <= 3
    assert all(e["attrs"]["cause"] == "wrong-code" for e in wrong)


def test_ftps_and_https_take_the_code_after_the_password(server):
    server.add_account("uma", password=PASSWORD)
    enrolled = enrol(server, "uma")
    server.start()
    secret, used = enrolled["secret"], set()
    with pytest.raises(ftplib.error_perm, match="530"):
        ftps_login(server, "uma", PASSWORD)
    ftps_login(server, "uma", PASSWORD + fresh_code(secret, used)).quit()
    ok = server.wait_event("login.succeeded", account="uma", protocol="ftps")
    assert ok["attrs"]["second_factor"] == "totp"
    assert https_status(server, "uma", PASSWORD) == "401"
    assert https_status(server, "uma", PASSWORD + fresh_code(secret, used)) == "200"
    assert https_status(server, "uma", "wrong-password" + fresh_code(secret, used)) == "401"
    recovery = enrolled["recovery_codes"][1]
    ftps_login(server, "uma", PASSWORD + recovery).quit()
    with pytest.raises(ftplib.error_perm, match="530"):
        ftps_login(server, "uma", PASSWORD + recovery)
    causes = [e["attrs"]["cause"] for e in server.events()
              if e["name"] == "login.failed" and e["account"] == "uma"]
    assert causes.count("wrong-code") >= 3 and "wrong-password" in causes
    # The secret never reaches the audit trail.
    assert secret not in (server.root / "wharf-data" / "audit.jsonl").read_text()


def test_required_by_group_or_account_and_managed_by_the_cli(server):
    server.add_account("vic", password=PASSWORD)
    server.wharf("group", "set", "users", "--require-second-factor", "true", check=True)
    server.start()
    # Required, not enrolled: the password alone is not enough, on any protocol.
    with pytest.raises(ftplib.error_perm, match="530"):
        ftps_login(server, "vic", PASSWORD)
    sock = paramiko.Transport(("127.0.0.1", server.port))
    sock.start_client(timeout=10)
    with pytest.raises(paramiko.AuthenticationException):
        sock.auth_password("vic", PASSWORD)
    sock.close()
    failed = server.wait_event("login.failed", account="vic")
    assert failed["attrs"]["cause"] == "second-factor-not-enrolled"
    assert "required, not enrolled" not in server.wharf("account", "show", "vic", check=True).stdout
    enrolled = enrol(server, "vic")
    ftps_login(server, "vic", PASSWORD + totp(enrolled["secret"])).quit()
    # New recovery codes replace the old ones.
    out = server.wharf("account", "totp", "recovery-codes", "vic", check=True).stdout
    fresh = [line.strip() for line in out.splitlines()[1:] if line.strip()]
    assert len(fresh) == 10 and not set(fresh) & set(enrolled["recovery_codes"])
    with pytest.raises(ftplib.error_perm, match="530"):
        ftps_login(server, "vic", PASSWORD + enrolled["recovery_codes"][0])
    ftps_login(server, "vic", PASSWORD + fresh[0]).quit()
    # Without the group requirement, disabling the factor restores password logins.
    server.wharf("group", "set", "users", "--require-second-factor", "false", check=True)
    server.wharf("account", "totp", "disable", "vic", check=True)
    ftps_login(server, "vic", PASSWORD).quit()
    said = server.wharf("account", "set", "vic", "--require-second-factor", "true", check=True)
    assert "second factor required: true" in said.stdout
    assert "required, not enrolled" in server.wharf("account", "show", "vic", check=True).stdout
    with pytest.raises(ftplib.error_perm, match="530"):
        ftps_login(server, "vic", PASSWORD)
    # The QR code is printed for people.
    human = server.wharf("account", "totp", "enable", "vic", check=True).stdout
    assert "▀" in human or "█" in human or "▄" in human
    assert "Recovery codes" in human
    # Each change went through the account operations: one record each, naming the
    # operator, with the before and after views, and never the secret or a code.
    secret = human.split("secret: ", 1)[1].split()[0]
    changes = [e for e in server.events()
               if e["name"] == "account.updated" and e.get("account") == "vic"
               and ("second factor" in e.get("message", "") or "recovery codes" in e.get("message", ""))]
    assert [e["message"] for e in changes][-4:] == [
        "second factor (TOTP) enrolled", "recovery codes replaced", "second factor removed",
        "second factor (TOTP) enrolled"], [e["message"] for e in changes]
    for e in changes:
        assert e["attrs"]["operator"] and '"second_factor":' in e["attrs"]["after"], e
        assert secret not in json.dumps(e) and fresh[1] not in json.dumps(e)


def test_web_client_asks_for_the_code_in_a_second_step(server):
    from conftest import ROOT
    browser_dir = ROOT / "tests" / "browser"
    server.add_account("wes", password=PASSWORD)
    enrolled = enrol(server, "wes")
    server.start()
    code = totp(enrolled["secret"])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    artifacts = browser_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        ["node", str(browser_dir / "second-factor.mjs"), f"https://127.0.0.1:{server.https_port}",
         "wes", PASSWORD, wrong, code, str(artifacts)],
        capture_output=True, text=True, timeout=120, cwd=browser_dir)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["codeTitle"] == "Verification code" and seen["codeAutocomplete"] == "one-time-code"
    assert seen["urlAfterPassword"] == "/login"  # no session before the code
    assert "Wrong code" in seen["wrongCode"]
    assert seen["afterCode"] == "/browse/" and seen["consoleErrors"] == []
    ok = server.wait_event("login.succeeded", account="wes", protocol="https")
    assert ok["attrs"]["second_factor"] == "totp"
    failed = server.wait_event("login.failed", account="wes")
    assert failed["attrs"]["cause"] == "wrong-code" and failed["attrs"]["method"] == "one-time-code"
    assert (artifacts / "8-code.png").stat().st_size > 5000


def test_code_step_refuses_forged_and_stale_posts(server):
    server.start()
    url = f"https://127.0.0.1:{server.https_port}/login/code"

    def post(*extra):
        return subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                               *extra, url], capture_output=True, text=True, timeout=30).stdout

    # Without the login form's CSRF cookie: forbidden, and recorded.
    assert post("-d", "csrf=abc&pending=xyz&code=123456") == "403"
    assert "CSRF" in server.wait_event("command.refused")["message"]
    # With it, but for a login that is not pending: nothing to finish.
    assert post("-H", "Cookie: __Host-wharf-login=abc", "-d", "csrf=abc&pending=xyz&code=123456") == "401"
    # From another site: forbidden.
    assert post("-H", "Origin: https://evil.example", "-H", "Cookie: __Host-wharf-login=abc",
                "-d", "csrf=abc&pending=xyz&code=123456") == "403"
