"""Logins kept across HTTP requests (bearer tokens, browser sessions, remembered Basic
credentials) follow the account as it is now, with curl over HTTPS:

- an account a real HTTPS authentication service vouched for, then refused ("contract
  ended"), loses its token and its remembered Basic login once the service's answer is
  older than `recheck_after` (the service is never asked without the password);
- an LDAP user (a real slapd, search then bind) keeps a token while the directory, asked
  again with the service account, still vouches for her, and loses it when she leaves
  the mapped group;
- a local account's new file-size bound, rules, and disabled state apply to the next
  request of a token made before the change (one new core session per change, none per
  request);
- a token or browser session ends `session_lifetime` after its login, used or not, and a
  token made with a token does not outlive its login.
"""

import json
import subprocess
import time

import pytest

from test_auth_ldap import (ADMIN_PASSWORD, BASE, LARA_PASSWORD, Slapd, search_then_bind,
                            use_chain)
from test_auth_http import JsonAuthService
from tls_certs import make_ca_and_leaf

PASSWORD = "kept-login-pass-1234"
HAL_PASSWORD = "hal-9000-open-the-pod-bay"
RECHECK = 3  # seconds: recheck_after in these tests (120 by default)


def set_https(server, **keys):
    """Adds keys to the HTTPS service of the default configuration."""
    config = (server.root / "wharf.toml").read_text()
    extra = "".join(f"\n{k} = {v}" for k, v in keys.items())
    anchor = "session_timeout = 900"
    assert anchor in config
    (server.root / "wharf.toml").write_text(config.replace(anchor, anchor + extra, 1))


def curl(server, path, *args, auth=None, bearer=None, data=None):
    """(status, body) of one request to the REST API, from a new curl process (a new
    connection each time)."""
    cmd = ["curl", "-sk", "-o", "-", "-w", "\n%{http_code}"]
    if auth:
        cmd += ["-u", f"{auth[0]}:{auth[1]}"]
    if bearer:
        cmd += ["-H", f"Authorization: Bearer {bearer}"]
    if data is not None:
        cmd += ["-T", "-"]
    cmd += [*args, f"https://127.0.0.1:{server.https_port}/api/v1{path}"]
    r = subprocess.run(cmd, input=data, capture_output=True, timeout=60)
    body, _, status = r.stdout.rpartition(b"\n")
    return int(status), body


def token_for(server, user, password):
    status, body = curl(server, "/token", "-X", "POST", auth=(user, password))
    assert status == 201, body
    return json.loads(body)["token"]


def failures(server, account):
    return [e for e in server.events() if e["name"] == "login.failed" and e.get("account") == account]


class SwitchableService(JsonAuthService):
    """The administrator's HTTPS authentication service: accepts hal with his password
    while `open` is true, and refuses him ("contract ended") afterwards."""

    def __init__(self, folder):
        self.open = True

        def decide(attempt):
            if attempt["username"] != "hal":
                return 401, None
            if not self.open:
                return 403, {"message": "contract ended"}
            if attempt.get("password") != HAL_PASSWORD:
                return 403, {"message": "wrong password"}
            return 200, {"groups": ["partners"]}

        make_ca_and_leaf(folder)
        super().__init__(folder, decide)


def test_an_http_method_refusal_ends_the_token_and_the_remembered_basic_login(server):
    folder = server.root / "authsvc"
    folder.mkdir()
    service = SwitchableService(folder)
    try:
        with open(server.root / "wharf.toml", "a") as f:
            f.write(f"""
[[authentication]]
type = "http"
name = "partner-api"
url = "https://127.0.0.1:{service.port}/check"
ca = "authsvc/ca.pem"
timeout = 5

[[authentication]]
type = "local"
""")
        set_https(server, recheck_after=RECHECK)
        server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                     "--create-home", "--allow", "/**=all", check=True)
        server.start()
        hal = ("hal", HAL_PASSWORD)
        token = token_for(server, *hal)
        assert curl(server, "/files/before.txt", bearer=token, data=b"in contract")[0] == 201
        assert curl(server, "/files", auth=hal)[0] == 200  # remembered from here on
        asked = len(service.requests)

        # The contract ends. The service cannot be asked about hal without his password,
        # so once its answer is older than recheck_after the token ends.
        service.open = False
        time.sleep(RECHECK + 1)
        status, _ = curl(server, "/files/after.txt", bearer=token, data=b"contract ended")
        assert status == 401
        assert not (server.homes / "hal" / "after.txt").exists()
        expired = server.wait_event("login.failed", account="hal", protocol="https")
        assert expired["attrs"]["method"] == "token"
        assert expired["attrs"]["cause"] == "login-expired"
        assert expired["attrs"]["authenticator"] == "partner-api"
        # The token is gone for good.
        assert curl(server, "/files", bearer=token)[0] == 401

        # The remembered Basic credential is checked afresh, with the password: refused.
        assert curl(server, "/files", auth=hal)[0] == 401
        refused = [e for e in failures(server, "hal") if e["attrs"].get("cause") == "refused"]
        assert refused and refused[-1]["message"].endswith("contract ended")
        # The service was asked once more (the fresh Basic login), never without a password.
        assert len(service.requests) == asked + 1
        assert all(r.get("password") == HAL_PASSWORD for r in service.requests)
    finally:
        service.close()


@pytest.fixture
def ldap_chain(server):
    key = (server.key.parent / (server.key.name + ".pub")).read_text().strip()
    slapd = Slapd(server.root / "ldap", server.homes / "lara-from-ldap", key)
    (server.root / "ldap" / "bind-password").write_text(ADMIN_PASSWORD + "\n")
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=all", check=True)
    use_chain(server, search_then_bind(slapd, f"ldaps://[::1]:{slapd.ldaps_port}")
              + "require_group = true\n")
    set_https(server, recheck_after=RECHECK)
    server.start()
    yield server, slapd
    slapd.stop()


def test_an_ldap_user_who_leaves_the_group_loses_her_token(ldap_chain):
    server, slapd = ldap_chain
    lara = ("lara", LARA_PASSWORD)
    token = token_for(server, *lara)
    assert curl(server, "/files/one.txt", bearer=token, data=b"1")[0] == 201
    # Past recheck_after the directory is asked again with the service account (there is
    # no password to bind with): she is still there, still a partner.
    time.sleep(RECHECK + 1)
    assert curl(server, "/files/two.txt", bearer=token, data=b"2")[0] == 201
    assert failures(server, "lara") == []

    # She leaves cn=partners (the directory is changed offline, then restarted).
    slapd.stop()
    change = server.root / "ldap" / "leave.ldif"
    change.write_text(f"""dn: cn=partners,ou=groups,{BASE}
changetype: modify
replace: member
member: uid=mike,ou=people,{BASE}
""")
    subprocess.run(["/usr/sbin/slapmodify", "-f", str(server.root / "ldap" / "slapd.conf"),
                    "-l", str(change)], check=True, capture_output=True)
    slapd.start()
    time.sleep(RECHECK + 1)
    status, _ = curl(server, "/files/three.txt", bearer=token, data=b"3")
    assert status == 401
    assert not (server.homes / "lara-from-ldap" / "three.txt").exists()
    refused = server.wait_event("login.failed", account="lara", protocol="https")
    assert refused["attrs"]["cause"] == "not-in-group"
    assert refused["attrs"]["method"] == "token"
    assert refused["attrs"]["authenticator"] == "corp-ldap"
    assert curl(server, "/files", auth=lara)[0] == 401


def test_a_local_accounts_changes_apply_to_the_next_token_request(server):
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=all", check=True)
    home = server.add_account("mallory", password=PASSWORD, groups=["partners"])
    server.start()
    token = token_for(server, "mallory", PASSWORD)
    big = b"x" * 100_000
    assert curl(server, "/files/big-before.bin", bearer=token, data=big)[0] == 201
    assert curl(server, "/files/small.txt", bearer=token, data=b"fine")[0] == 201

    def sessions_started():
        return len([e for e in server.events()
                    if e["name"] == "session.started" and e.get("account") == "mallory"])

    # Unchanged, the token keeps its one core session.
    assert sessions_started() == 1

    # A smaller file bound applies to the token's next request.
    server.wharf("account", "set", "mallory", "--max-file-size", "1K", check=True)
    status, _ = curl(server, "/files/big-after.bin", bearer=token, data=big)
    assert status == 507
    assert not (home / "big-after.bin").exists()
    assert curl(server, "/files/tiny.txt", bearer=token, data=b"tiny")[0] == 201
    assert sessions_started() == 2

    # New rules (a group's, applied as code) apply to the next request too.
    rules = server.root / "rules.toml"
    rules.write_text(f"""
[[group]]
name = "partners"
home_template = "{server.homes}/${{USER}}"
create_home = true

[[group.rule]]
pattern = "/locked/**"
deny = ["write", "overwrite", "delete"]

[[group.rule]]
pattern = "/**"
allow = ["all"]
""")
    server.wharf("apply", str(rules), check=True)
    (home / "locked").mkdir()
    assert curl(server, "/files/locked/x.txt", bearer=token, data=b"x")[0] == 403
    assert not (home / "locked" / "x.txt").exists()
    assert curl(server, "/files/open.txt", bearer=token, data=b"open")[0] == 201
    assert sessions_started() == 3

    # Disabled: refused at once.
    server.wharf("account", "disable", "mallory", check=True)
    assert curl(server, "/files", bearer=token)[0] == 401
    disabled = server.wait_event("login.failed", account="mallory")
    assert disabled["attrs"]["cause"] == "disabled" and disabled["attrs"]["method"] == "token"


def web_login(server, user, password):
    """A browser login with curl (the form's CSRF cookie, then the session cookie): the
    cookie jar."""
    base = f"https://127.0.0.1:{server.https_port}"
    jar = server.root / f"jar-{time.time_ns()}"
    form = subprocess.run(["curl", "-sk", "-c", str(jar), f"{base}/login"],
                          capture_output=True, text=True).stdout
    csrf = form.split('name="csrf" value="')[1].split('"')[0]
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-b", str(jar),
                        "-c", str(jar), "-d", f"csrf={csrf}", "-d", f"user={user}",
                        "-d", f"password={password}", f"{base}/login"],
                       capture_output=True, text=True)
    assert r.stdout == "303"
    return jar


def browse(server, jar):
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                        "-b", str(jar), f"https://127.0.0.1:{server.https_port}/browse/"],
                       capture_output=True, text=True)
    return r.stdout


def test_tokens_and_browser_sessions_end_after_their_lifetime(server):
    lifetime = 6
    set_https(server, session_lifetime=lifetime)
    server.add_account("mallory", password=PASSWORD)
    server.start()
    before = time.time()
    token = token_for(server, "mallory", PASSWORD)
    jar = web_login(server, "mallory", PASSWORD)
    logged_in = time.time()  # both logins were made between `before` and now
    assert browse(server, jar).startswith("200")
    # Used every second, so never idle; a token made with the token keeps the login's age.
    status, body = curl(server, "/token", "-X", "POST", bearer=token)
    assert status == 201
    second = json.loads(body)["token"]
    while time.time() < before + lifetime - 1.5:
        assert curl(server, "/files", bearer=token)[0] == 200
        assert curl(server, "/files", bearer=second)[0] == 200
        assert browse(server, jar).startswith("200")
        time.sleep(1)
    time.sleep(max(0.0, logged_in + lifetime + 0.5 - time.time()))
    assert curl(server, "/files", bearer=token)[0] == 401
    assert curl(server, "/files", bearer=second)[0] == 401
    assert browse(server, jar).endswith("/login")
    # A new login works as before.
    assert curl(server, "/files", bearer=token_for(server, "mallory", PASSWORD))[0] == 200


def test_the_lifetimes_are_checked(server):
    set_https(server, session_lifetime=0, recheck_after=7200)
    out = server.wharf("check-config")
    assert out.returncode == 1
    assert "session_lifetime" in out.stderr and "must be at least 1" in out.stderr
    assert "recheck_after" in out.stderr and "at most 3600" in out.stderr


def test_a_refused_upload_body_still_gets_its_answer(server):
    """A body refused part-way (over the account's file size) is read out, a bounded
    amount, before the refusal is sent: closing with unread bytes resets the connection,
    and curl, still sending, then reported only its `100 Continue` (1 in 3 on a busy
    machine before)."""
    server.add_account("mallory", password=PASSWORD)
    server.wharf("account", "set", "mallory", "--max-file-size", "1K", check=True)
    server.start()
    token = token_for(server, "mallory", PASSWORD)
    statuses = [curl(server, f"/files/big{i}.bin", bearer=token, data=b"x" * 100_000)[0]
                for i in range(20)]
    assert statuses == [507] * 20, statuses
