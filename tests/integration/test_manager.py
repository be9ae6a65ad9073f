"""The Manager (`type = "manager"`): the first run's administrator logs in; administrators,
roles and API tokens from the CLI; the admin API driven by curl with a token of each role over
127.0.0.1 and [::1], each change recorded with who made it; one-time codes; CSRF, cookies and
headers; failed Manager logins feed the ban engine; `allow_from` refuses other networks."""

import json
import re
import subprocess
import time

import pytest

from manager_client import Browser, api
from test_totp import totp

PASSWORD = "manager pass phrase 1"


def first_password(server):
    return re.search(r"Password \(shown once, stored only as a hash\): (\S+)",
                     server.admin_output).group(1)


def add_admin(server, name, role, password=PASSWORD):
    server.wharf("admin", "add", name, "--role", role, "--password-stdin",
                 input=password + "\n", check=True)


def token(server, name, admin, role):
    out = server.wharf("admin", "token", "add", name, "--admin", admin, "--role", role,
                       check=True).stdout.strip()
    assert out.startswith("wharf_") and len(out) == 6 + 64, out
    return out


def test_first_run_administrator_logs_in_to_the_console(server):
    # The first run says where the Manager is (the fixture moves its port afterwards).
    assert "Manager: https://localhost:9443/" in server.admin_output, server.admin_output
    server.start()
    browser = Browser(server)
    status, headers, page = browser.login("admin", "not the password")
    assert status == 401 and "Wrong name or password" in page
    status, headers, _ = browser.login("admin", first_password(server))
    assert status == 303 and headers["Location"] == "/"
    session = browser.cookies["__Host-wharf-manager"]
    assert len(session) == 64
    status, headers, page, _ = browser.request("GET", "/")
    assert status == 200 and "Dashboard" in page
    # The dashboard lists every service with its addresses, both families.
    for name in ("ssh", "ftp", "ftps", "https", "manager"):
        assert f"<td>{name}</td>" in page, name
    assert f"[::1]:{server.manager_port}" in page and f"127.0.0.1:{server.manager_port}" in page
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    for page_path in ("/accounts", "/events", "/bans", "/admins", "/me"):
        status, _, page, _ = browser.request("GET", page_path)
        assert status == 200, page_path
    # The cookie is this origin's only, out of scripts' reach, never sent cross-site.
    failed = server.wait_event("admin.login_failed")
    assert failed["attrs"]["cause"] == "wrong-password" and failed["protocol"] == "admin"
    ok = server.wait_event("admin.login_succeeded")
    assert ok["attrs"]["admin"] == "admin" and ok["service"] == "manager"
    status, headers, _, cookies = browser.request("POST", "/logout", form={"csrf": browser.csrf})
    assert status == 303 and headers["Location"] == "/login"
    status, headers, _, _ = Browser(server).request(
        "GET", "/", headers={"Cookie": f"__Host-wharf-manager={session}"})
    assert status == 303 and headers["Location"] == "/login"
    server.wait_event("admin.logged_out")


def test_session_cookie_attributes_and_csrf(server):
    server.start()
    browser = Browser(server)
    browser.request("GET", "/login")
    status, headers, page = browser.login("admin", first_password(server))
    set_cookie = [c for c in headers.get_all("Set-Cookie") if c.startswith("__Host-wharf-manager=")][0]
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in set_cookie, set_cookie
    assert "Domain" not in set_cookie
    browser.request("GET", "/accounts")
    form = {"name": "csrf-victim", "password": "a long enough password 1"}
    # No CSRF token: refused, nothing made.
    status, _, page, _ = browser.request("POST", "/accounts", form=form)
    assert status == 403 and "CSRF" in page
    # Another site's page posting with the browser's cookie: refused on its origin.
    status, _, _, _ = browser.request("POST", "/accounts", form={**form, "csrf": browser.csrf},
                                      headers={"Origin": "https://evil.example"})
    assert status == 403
    assert server.wharf("account", "show", "csrf-victim").returncode != 0
    # With the token, from its own origin: made.
    status, headers, _, _ = browser.request("POST", "/accounts", form={**form, "csrf": browser.csrf})
    assert status == 303 and headers["Location"] == "/accounts/csrf-victim"
    made = server.wait_event("account.created", account="csrf-victim")
    assert made["attrs"]["admin"] == "admin" and made["service"] == "manager"
    assert made["remote"].startswith("127.0.0.1:")
    # A file service's cookie is no Manager session.
    status, headers, _, _ = Browser(server).request(
        "GET", "/", headers={"Cookie": "__Host-wharf-manager=" + "0" * 64})
    assert status == 303


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_api_tokens_of_each_role(server, host):
    add_admin(server, "alice", "admin")
    add_admin(server, "oscar", "operator")
    add_admin(server, "aude", "auditor")
    tokens = {
        "admin": token(server, "alice-ci", "alice", "admin"),
        "operator": token(server, "oscar-ci", "oscar", "operator"),
        "auditor": token(server, "aude-ci", "aude", "auditor"),
    }
    # A token holds no more than its administrator's role.
    refused = server.wharf("admin", "token", "add", "too-much", "--admin", "oscar", "--role", "admin")
    assert refused.returncode != 0 and "role" in refused.stderr
    listed = server.wharf("admin", "token", "list", check=True).stdout
    assert "oscar-ci" in listed and tokens["operator"] not in listed
    server.start()

    status, body = api(server, "GET", "/api/v1/accounts", host=host)
    assert status == 401
    status, body = api(server, "GET", "/api/v1/me", tokens["auditor"], host=host)
    assert status == 200 and body == {"name": "aude", "role": "auditor", "token": "aude-ci"}
    status, body = api(server, "GET", "/api/v1/openapi.json", host=host)
    assert status == 200 and "/api/v1/accounts" in body["paths"]

    account = {"name": "partner1", "password": "partner pass phrase 1",
               "rules": [{"pattern": "/in/**", "allow": ["list", "write"]}]}
    status, body = api(server, "POST", "/api/v1/accounts", tokens["auditor"], account, host=host)
    assert status == 403, body
    refusal = server.wait_event("admin.refused")
    assert refusal["attrs"]["admin"] == "aude" and refusal["attrs"]["token"] == "aude-ci"
    status, body = api(server, "POST", "/api/v1/accounts", tokens["operator"], account, host=host)
    assert status == 201, body
    assert body["rules"] == account["rules"] and "password_hash" not in str(body)
    status, body = api(server, "POST", "/api/v1/accounts", tokens["operator"], account, host=host)
    assert status == 409
    status, body = api(server, "POST", "/api/v1/accounts", tokens["operator"],
                       {"name": "weak", "password": "short"}, host=host)
    assert status == 422 and "password" in body["error"]
    status, body = api(server, "GET", "/api/v1/accounts/partner1", tokens["auditor"], host=host)
    assert status == 200 and body["enabled"] is True
    # The rule tester: the account's own rule decides writes under /in; its group's the rest.
    status, body = api(server, "GET", "/api/v1/accounts/partner1/may?verb=write&path=/in/a.pdf",
                       tokens["auditor"], host=host)
    assert status == 200 and body == {"allowed": True, "from": "account",
                                      "rule": {"pattern": "/in/**", "allow": ["list", "write"]}}
    status, body = api(server, "GET", "/api/v1/accounts/partner1/may?verb=delete&path=/in/a.pdf",
                       tokens["auditor"], host=host)
    assert status == 200 and body["from"] == "group users" and body["allowed"] is True
    status, body = api(server, "GET", "/api/v1/accounts/partner1/may?verb=fly&path=/in",
                       tokens["auditor"], host=host)
    assert status == 422
    status, body = api(server, "PATCH", "/api/v1/accounts/partner1", tokens["auditor"],
                       {"enabled": False}, host=host)
    assert status == 403
    status, body = api(server, "PATCH", "/api/v1/accounts/partner1", tokens["operator"],
                       {"enabled": False}, host=host)
    assert status == 200 and body["enabled"] is False
    changed = server.wait_event("account.updated", account="partner1")
    assert changed["attrs"]["token"] == "oscar-ci"
    assert '"enabled":true' in changed["attrs"]["before"] and '"enabled":false' in changed["attrs"]["after"]
    assert changed["remote"].rsplit(":", 1)[0].strip("[]") == host

    # Administrators and tokens: the admin role only.
    newcomer = {"name": "nadia", "password": "auditing pass phrase 1", "role": "auditor"}
    status, _ = api(server, "POST", "/api/v1/admins", tokens["operator"], newcomer, host=host)
    assert status == 403
    status, body = api(server, "POST", "/api/v1/admins", tokens["admin"], newcomer, host=host)
    assert status == 201 and body["role"] == "auditor"
    status, body = api(server, "POST", "/api/v1/tokens", tokens["admin"],
                       {"name": "nadia-ci", "admin": "nadia", "role": "auditor", "days": 1}, host=host)
    assert status == 201 and body["token"].startswith("wharf_")
    nadia = body["token"]
    status, body = api(server, "GET", "/api/v1/events?account=partner1&limit=5", nadia, host=host)
    assert status == 200 and {e["name"] for e in body["events"]} >= {"account.created", "account.updated"}
    status, body = api(server, "DELETE", "/api/v1/tokens/nadia-ci", tokens["admin"], host=host)
    assert status == 204
    status, _ = api(server, "GET", "/api/v1/me", nadia, host=host)
    assert status == 401
    # Exports: CSV and JSON lines, the same filters.
    status, text = api(server, "GET", "/api/v1/events?account=partner1&format=csv", tokens["auditor"],
                       host=host, raw=True)
    lines = text.strip().splitlines()
    assert status == 200 and lines[0].startswith("seq,time,node,id,name,outcome")
    assert any(",account.created," in line for line in lines[1:])
    status, text = api(server, "GET", "/api/v1/events?account=partner1&format=jsonl", tokens["auditor"],
                       host=host, raw=True)
    assert status == 200 and all(line.startswith("{") for line in text.strip().splitlines())
    # Removing an administrator removes its tokens: the next request with one is refused.
    status, _ = api(server, "DELETE", "/api/v1/admins/alice", tokens["admin"], host=host)
    assert status == 204
    status, _ = api(server, "GET", "/api/v1/me", tokens["admin"], host=host)
    assert status == 401


def test_cli_administrators_and_the_last_admin(server):
    add_admin(server, "bob", "operator")
    out = server.wharf("admin", "list", check=True).stdout
    assert re.search(r"^admin\s+admin\s+enabled", out, re.M) and re.search(r"^bob\s+operator", out, re.M)
    weak = server.wharf("admin", "add", "weak", "--password-stdin", input="short\n")
    assert weak.returncode != 0 and "password refused" in weak.stderr
    bad_role = server.wharf("admin", "role", "bob", "root")
    assert bad_role.returncode != 0 and "admin, operator or auditor" in bad_role.stderr
    last = server.wharf("admin", "remove", "admin")
    assert last.returncode != 0 and "last enabled administrator" in last.stderr
    demote = server.wharf("admin", "role", "admin", "auditor")
    assert demote.returncode != 0 and "last enabled administrator" in demote.stderr
    server.wharf("admin", "role", "bob", "admin", check=True)
    server.wharf("admin", "role", "admin", "auditor", check=True)
    server.wharf("admin", "remove", "admin", check=True)
    events = [e for e in server.events() if e["id"] // 10000 == 5]
    names = [e["name"] for e in events]
    assert names.count("admin.created") == 1 and "admin.removed" in names
    role_change = next(e for e in events if e["name"] == "admin.updated" and e["attrs"]["target"] == "bob")
    assert '"role":"operator"' in role_change["attrs"]["before"]
    assert '"role":"admin"' in role_change["attrs"]["after"]
    assert role_change["service"] == "cli" and role_change["attrs"]["operator"]
    assert all("password_hash" not in str(e) and "$argon2" not in str(e) for e in events)


def test_one_time_codes_for_an_administrator(server):
    add_admin(server, "tess", "operator")
    enrolled = server.wharf("admin", "totp", "enable", "tess", "--json", check=True).stdout
    secret = json.loads(enrolled)["secret"]
    server.start()
    browser = Browser(server)
    status, headers, page = browser.login("tess", PASSWORD, code="000000")
    assert status == 401 and "Wrong code" in page
    status, headers, page = browser.login("tess", PASSWORD, code=lambda: totp(secret))
    assert status == 303 and headers["Location"] == "/", page
    ok = server.wait_event("admin.login_succeeded", account=None)
    assert ok["attrs"]["second_factor"] == "true"
    wrong = [e for e in server.events() if e["name"] == "admin.login_failed"]
    assert wrong and wrong[-1]["attrs"]["cause"] == "wrong-code"
    # Required but not enrolled: no login at all.
    server.wharf("admin", "totp", "disable", "tess", check=True)
    server.wharf("admin", "totp", "require", "tess", check=True)
    status, _, page = Browser(server).login("tess", PASSWORD)
    assert status == 401


def test_enrolling_in_the_console_waits_for_a_first_code(server):
    """An administrator enrols an authenticator on its own page: nothing is kept until a
    current code of it is given; a wrong code or an altered form changes nothing."""
    import html as html_text

    add_admin(server, "nina", "operator")
    server.start()
    browser = Browser(server)
    browser.login("nina", PASSWORD)
    browser.request("GET", "/me")
    status, _, page, _ = browser.request("POST", "/me", form={"csrf": browser.csrf, "action": "enrol"})
    assert status == 200 and "Nothing changes until" in page, page
    secret = re.search(r'id="secret">([A-Z2-7]+)<', page).group(1)
    factor = html_text.unescape(re.search(r'name="factor" value="([^"]+)"', page).group(1))
    seal = re.search(r'name="seal" value="([0-9a-f]+)"', page).group(1)
    assert len(re.findall(r"<li><code>", page)) >= 8  # the recovery codes, shown once

    def shown():
        return json.loads(server.wharf("admin", "show", "nina", "--json", check=True).stdout)

    def confirm(**fields):
        form = {"csrf": browser.csrf, "action": "confirm", "factor": factor, "seal": seal, **fields}
        return browser.request("POST", "/me", form=form)

    # Not kept yet: the next login asks no code.
    assert not shown()["second_factor"]
    status, _, page, _ = confirm(code="000000")
    assert status == 422 and "not the app" in page and not shown()["second_factor"]
    # Another secret slipped in under this session's seal is refused.
    forged = json.loads(factor)
    forged["secret"] = "A" * 32
    status, _, page, _ = confirm(code=totp("A" * 32), factor=json.dumps(forged))
    assert status == 422 and "altered" in page and not shown()["second_factor"]
    # Another session's page does not confirm here either.
    other = Browser(server)
    other.login("nina", PASSWORD)
    other.request("GET", "/me")
    status, _, page, _ = other.request("POST", "/me", form={
        "csrf": other.csrf, "action": "confirm", "factor": factor, "seal": seal, "code": totp(secret)})
    assert status == 422 and not shown()["second_factor"]
    used = totp(secret)
    status, _, page, _ = confirm(code=used)
    assert status == 200 and 'id="confirmed"' in page, page
    assert shown()["second_factor"]
    made = [e for e in server.events() if e["name"] == "admin.updated"][-1]
    assert "confirmed" in made["message"] and made["attrs"]["admin"] == "nina"
    assert secret not in json.dumps(made)
    # The login now asks for a code, and the one that confirmed is spent.
    status, _, page = Browser(server).login("nina", PASSWORD, code=used)
    assert status == 401 and "Wrong code" in page, page


def test_failed_manager_logins_ban_the_network_and_the_api_lifts_it(server):
    with open(server.root / "wharf.toml", "a") as f:
        f.write("\n[ban]\nthreshold = 3\nwindow = 60\nban_time = 120\n")
    add_admin(server, "ops", "operator")
    ops = token(server, "ops-ci", "ops", "operator")
    server.start()
    for _ in range(3):
        status, _, _ = Browser(server).login("admin", "wrong password guess")
        assert status == 401
    ban = server.wait_event("ban.added")
    assert ban["attrs"]["network"] == "127.0.0.1/32"
    status, _ = api(server, "GET", "/api/v1/me", ops, host="127.0.0.1")
    assert status == 0, "127.0.0.1 is banned: closed before the TLS handshake"
    # From [::1] (another network) the operator lifts the ban.
    status, body = api(server, "DELETE", "/api/v1/bans/127.0.0.1", ops, host="::1")
    assert status == 200 and body["lifted"] == "127.0.0.1/32"
    lifted = server.wait_event("ban.removed")
    assert lifted["attrs"]["admin"] == "ops" and lifted["attrs"]["token"] == "ops-ci"
    deadline = time.time() + 5
    while time.time() < deadline:
        status, _ = api(server, "GET", "/api/v1/me", ops, host="127.0.0.1")
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200


def test_allow_from_limits_the_manager_to_listed_networks(server):
    config = server.root / "wharf.toml"
    config.write_text(config.read_text().replace(
        '# allow_from = ["127.0.0.1", "::1", "10.0.0.0/8"]', 'allow_from = ["::1/128"]'))
    add_admin(server, "ann", "auditor")
    ann = token(server, "ann-ci", "ann", "auditor")
    server.start()
    status, _ = api(server, "GET", "/api/v1/me", ann, host="::1")
    assert status == 200
    status, _ = api(server, "GET", "/api/v1/me", ann, host="127.0.0.1")
    assert status == 0
    refused = server.wait_event("connection.refused", service="manager")
    assert refused["attrs"]["cause"] == "network-not-allowed"


def test_console_in_chromium(server):
    """The console flow of a new administrator, in headless Chromium; screenshots land in
    tests/browser/artifacts/."""
    import shutil
    import subprocess

    from conftest import ROOT

    browser_dir = ROOT / "tests" / "browser"
    artifacts = browser_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    for old in artifacts.glob("manager-*.png"):
        old.unlink()
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=list,read", check=True)
    add_admin(server, "ada", "admin")
    secret = json.loads(server.wharf("admin", "totp", "enable", "ada", "--json", check=True).stdout)["secret"]
    add_admin(server, "audrey", "auditor")
    server.wharf("ban", "add", "192.0.2.7", "--reason", "seen scanning", check=True)
    server.start()
    node = subprocess.Popen(
        ["node", str(browser_dir / "manager.mjs"), f"https://127.0.0.1:{server.manager_port}",
         "ada", PASSWORD, totp(secret), "dora", str(server.key) + ".pub", "audrey", PASSWORD,
         "192.0.2.7", str(artifacts)],
        cwd=browser_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = node.stdout.readline()
        assert line.strip() == "READY", line + node.stderr.read()
        # The account the console made moves a file with OpenSSH's sftp.
        (server.root / "invoice.csv").write_text("id,total\n1,42\n")
        server.sftp("dora", "mkdir /drop\nput invoice.csv /drop/invoice.csv\n")
        server.wait_event("upload.finished", account="dora", path="/drop/invoice.csv")
        # A session opened before the configuration changes, kept open across it, with an
        # upload in flight that the dashboard and the sessions page show.
        client = server.paramiko("dora")
        sftp = client.open_sftp()
        slow = sftp.open("/drop/slow.bin", "wb")
        slow.set_pipelined(False)
        slow.write(b"x" * 70_000)
        slow.flush()
        node.stdin.write("go\n")
        node.stdin.flush()
        line = node.stdout.readline()
        assert line.strip() == "APPLIED", line + node.stderr.read()
        # The session goes on, and its next upload follows the handler just added.
        with sftp.open("/drop/after.csv", "w") as f:
            f.write("id,total\n2,7\n")
        deadline = time.time() + 10
        while time.time() < deadline:
            renamed = [n for n in sftp.listdir("/drop") if n.endswith("-after.csv")]
            if renamed:
                break
            time.sleep(0.2)
        assert renamed and "invoice.csv" in sftp.listdir("/drop"), sftp.listdir("/drop")
        slow.close()
        sftp.close()
        client.close()
        node.stdin.write("go\n")
        node.stdin.flush()
        out, err = node.communicate(timeout=120)
    finally:
        if node.poll() is None:
            node.kill()
    assert node.returncode == 0, out + err
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["loginUrl"] == "/login"
    assert seen["dashboardTitle"].startswith("Dashboard") and seen["chart"] == 72
    assert seen["accountTitle"] == "Account dora" and seen["keyListed"] == 1
    assert "dora" in seen["groupMembers"], seen["groupMembers"]
    assert "Allowed" in seen["allowed"] and "account rule" in seen["allowed"]
    assert "Refused" in seen["refused"] and "refused by default" in seen["refused"]
    assert "upload.finished" in seen["dashboardEvents"] and "dora" in seen["dashboardEvents"]
    assert "/drop/slow.bin" in seen["transfers"] and "68.4 KiB" in seen["transfers"], seen["transfers"]
    assert "dora" in seen["sessions"] and "sftp" in seen["sessions"], seen["sessions"]
    assert "/drop/invoice.csv" in seen["events"] and seen["exportLinks"] == 2
    assert "account.updated" in seen["liveRow"] and "dora" in seen["liveRow"]
    assert seen["bannedListed"] >= 1 and seen["bannedAfterLift"] == 0
    assert seen["afterLogout"] == "/login"
    assert seen["consoleErrors"] == []
    assert all(status == 200 for status in seen["auditorPages"].values()), seen["auditorPages"]
    assert seen["auditorForms"] == 0 and seen["auditorChange"] == 403
    assert "No problem" in seen["configurationProblems"]
    assert '+ [[handler]]' in seen["diff"] and '+ name = "unique-names"' in seen["diff"]
    assert "Applied" in seen["applied"] and "handlers replaced" in seen["applied"]
    assert seen["auditorConfiguration"] == 403
    assert seen["auditorClusterConfiguration"] == 403
    assert "No revision was published yet" in seen["clusterRevision"]
    assert "No problem" in seen["clusterProblems"]
    changed = server.wait_event("configuration.changed")
    assert changed["attrs"]["admin"] == "ada" and changed["attrs"]["lines"] == "7"
    assert "[handler.uuid-prefix]" in (server.root / "wharf.toml").read_text()
    made = server.wait_event("account.created", account="dora")
    assert made["attrs"]["admin"] == "ada" and '"pattern":"/drop/**"' in made["attrs"]["after"]
    assert server.wait_event("ban.removed")["attrs"]["admin"] == "ada"
    assert server.wait_event("admin.refused")["attrs"]["admin"] == "audrey"
    shots = sorted(p.name for p in artifacts.glob("manager-*.png"))
    assert len(shots) == 19 and all((artifacts / s).stat().st_size > 5000 for s in shots), shots


def test_a_token_never_becomes_its_owners_login(server):
    """An auditor token of an admin tried to set its owner's password and enrol its own
    authenticator, through the API and the console's forms: both refused."""
    add_admin(server, "owner", "admin")
    readonly = token(server, "owner-ro", "owner", "auditor")
    server.start()
    status, body = api(server, "PATCH", "/api/v1/me", readonly,
                       {"current_password": PASSWORD, "password": "attacker chosen pass 1"})
    assert status == 403 and "token" in body["error"]
    for path, form in [("/me", "action=password&current=x&password=attacker+chosen+pass+1"),
                       ("/me", "action=enrol"), ("/admins", "action=add")]:
        run = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                              "-X", "POST", "-H", f"Authorization: Bearer {readonly}", "--data", form,
                              f"https://127.0.0.1:{server.manager_port}{path}"],
                             capture_output=True, text=True, timeout=30)
        status, _, location = run.stdout.partition(" ")
        assert status == "303" and location.endswith("/login"), (path, run.stdout)
    # The owner's password and codes are as they were.
    status, _, _ = Browser(server).login("owner", PASSWORD)
    assert status == 303
    shown = json.loads(server.wharf("admin", "show", "owner", "--json", check=True).stdout)
    assert shown["second_factor"] is False


def test_sessions_end_when_the_administrator_changes(server):
    add_admin(server, "vic", "operator")
    server.start()
    browser = Browser(server)
    assert browser.login("vic", PASSWORD)[0] == 303
    assert browser.request("GET", "/")[0] == 200
    server.wharf("admin", "disable", "vic", check=True)
    server.wharf("admin", "enable", "vic", check=True)
    status, headers, _, _ = browser.request("GET", "/")
    assert status == 303 and headers["Location"] == "/login"
    # Its own password change needs the current one, and ends its sessions too.
    assert browser.login("vic", PASSWORD)[0] == 303
    browser.request("GET", "/me")
    status, _, page, _ = browser.request("POST", "/me", form={
        "csrf": browser.csrf, "action": "password", "current": "not it", "password": "brand new pass phrase 2"})
    assert status == 422 and "current password is wrong" in page
    status, headers, _, _ = browser.request("POST", "/me", form={
        "csrf": browser.csrf, "action": "password", "current": PASSWORD, "password": "brand new pass phrase 2"})
    assert status == 303
    assert browser.request("GET", "/")[0] == 303
    assert Browser(server).login("vic", "brand new pass phrase 2")[0] == 303


def test_bans_from_the_manager_are_bounded(server):
    add_admin(server, "olga", "operator")
    ops = token(server, "olga-ci", "olga", "operator")
    server.start()
    for address in ["0.0.0.0/0", "::/0", "10.0.0.0/7"]:
        status, body = api(server, "POST", "/api/v1/bans", ops, {"address": address})
        assert status == 422 and "too wide" in body["error"], (address, body)
    status, body = api(server, "POST", "/api/v1/bans", ops, {"address": "127.0.0.0/8"})
    assert status == 422 and "your own address" in body["error"]
    status, body = api(server, "POST", "/api/v1/bans", ops, {"address": "192.0.2.9", "reason": "scan"})
    assert status == 201 and body["network"] == "192.0.2.9/32" and body["node"] == "wharf-1"


def test_configuration_through_the_api(server):
    add_admin(server, "cfg", "admin")
    add_admin(server, "opal", "operator")
    admin = token(server, "cfg-ci", "cfg", "admin")
    operator = token(server, "opal-ci", "opal", "operator")
    server.start()
    status, text = api(server, "GET", "/api/v1/configuration", admin, raw=True)
    assert status == 200 and '[[service]]' in text
    status, _ = api(server, "GET", "/api/v1/configuration", operator)
    assert status == 403
    broken = text + '\n[[service]]\nname = "x"\ntype = "ssh"\nport = 0\n'
    run = subprocess.run(["curl", "-sk", "-X", "POST", "-H", f"Authorization: Bearer {admin}",
                          "--data-binary", broken,
                          f"https://127.0.0.1:{server.manager_port}/api/v1/configuration/check"],
                         capture_output=True, text=True, timeout=30)
    answer = json.loads(run.stdout)
    assert answer["ok"] is False
    port_issue = next(i for i in answer["issues"] if i["key"] == "service[5].port")
    assert port_issue["line"] == broken.splitlines().index("port = 0") + 1
    # Applying a text that does not validate writes nothing.
    run = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                          "-H", f"Authorization: Bearer {admin}", "--data-binary", broken,
                          f"https://127.0.0.1:{server.manager_port}/api/v1/configuration"],
                         capture_output=True, text=True, timeout=30)
    assert run.stdout == "422" and (server.root / "wharf.toml").read_text() == text
    # A valid one is written and applied: a service retired, the outcome said.
    start = text.index('[[service]]\nname = "ftps"')
    end = text.index("[[service]]", start + 1)
    smaller = text[:start] + text[end:]
    run = subprocess.run(["curl", "-sk", "-X", "PUT", "-H", f"Authorization: Bearer {admin}",
                          "--data-binary", smaller,
                          f"https://127.0.0.1:{server.manager_port}/api/v1/configuration"],
                         capture_output=True, text=True, timeout=30)
    answer = json.loads(run.stdout)
    assert answer["applied"] is True and "retired: ftps" in answer["outcome"], answer
    assert (server.root / "wharf.toml").read_text() == smaller
    changed = server.wait_event("configuration.changed")
    assert changed["attrs"]["token"] == "cfg-ci"


def test_handler_jobs_are_listed_retried_and_cancelled(server):
    """A handler whose program fails gives up; an operator retries the job from the API and
    it runs again; an auditor may list but not retry."""
    with open(server.root / "wharf.toml", "a") as f:
        f.write('\n[[handler]]\nname = "always-fails"\non = ["upload.finished"]\nattempts = 1\n\n'
                '[handler.exec]\nprogram = "/bin/false"\n')
    server.add_account("jo", password=PASSWORD)
    add_admin(server, "opie", "operator")
    add_admin(server, "audi", "auditor")
    operator = token(server, "opie-ci", "opie", "operator")
    auditor = token(server, "audi-ci", "audi", "auditor")
    server.start()
    (server.root / "a.txt").write_text("a\n")
    server.sftp("jo", "put a.txt\n")
    deadline = time.time() + 20
    failed = []
    while time.time() < deadline and not failed:
        status, body = api(server, "GET", "/api/v1/jobs?state=failed", auditor)
        failed = body["jobs"] if status == 200 else []
        time.sleep(0.3)
    assert failed and failed[0]["handler"] == "always-fails" and failed[0]["attempts"] == 1, failed
    job = failed[0]["id"]
    status, _ = api(server, "POST", f"/api/v1/jobs/{job}/retry", auditor)
    assert status == 403
    status, body = api(server, "POST", f"/api/v1/jobs/{job}/retry", operator)
    assert status == 200 and body["state"] == "queued"
    retried = server.wait_event("job.retried")
    assert retried["attrs"]["admin"] == "opie" and retried["attrs"]["handler"] == "always-fails"
    # The engine runs it again (and it fails again); cancelling a job no longer queued is refused.
    deadline = time.time() + 30
    while time.time() < deadline:
        if len([e for e in server.events() if e["name"] == "handler.failed"]) >= 2:
            break
        time.sleep(0.3)
    assert len([e for e in server.events() if e["name"] == "handler.failed"]) == 2
    deadline = time.time() + 20
    while time.time() < deadline:
        status, body = api(server, "GET", "/api/v1/jobs", auditor)
        if next(j for j in body["jobs"] if j["id"] == job)["state"] == "failed":
            break
        time.sleep(0.3)
    status, body = api(server, "POST", f"/api/v1/jobs/{job}/cancel", operator)
    assert status == 409 and "not queued" in body["error"]


def test_groups_through_the_api(server):
    add_admin(server, "gina", "operator")
    operator = token(server, "gina-ci", "gina", "operator")
    server.start()
    group = {"name": "partners", "home_template": str(server.homes) + "/${USER}", "create_home": True,
             "rules": [{"pattern": "/in/**", "allow": ["list", "write"]}], "protocols": ["sftp"]}
    status, body = api(server, "POST", "/api/v1/groups", operator, group)
    assert status == 201 and body["protocols"] == ["sftp"], body
    status, body = api(server, "POST", "/api/v1/groups", operator,
                       {**group, "name": "elsewhere", "home_template": "relative/${USER}"})
    assert status == 422 and "absolute" in body["error"], body
    status, body = api(server, "POST", "/api/v1/groups", operator, group)
    assert status == 409
    status, body = api(server, "POST", "/api/v1/accounts", operator, {"name": "pia", "groups": ["partners"]})
    assert status == 201
    status, body = api(server, "PATCH", "/api/v1/groups/partners", operator,
                       {"rules": [{"pattern": "/out/**", "allow": ["list", "read"]}]})
    assert status == 200 and body["rules"][0]["pattern"] == "/out/**"
    status, body = api(server, "GET", "/api/v1/accounts/pia/may?verb=read&path=/out/a", operator)
    assert body["allowed"] is True and body["from"] == "group partners"
    status, body = api(server, "DELETE", "/api/v1/groups/partners", operator)
    assert status == 409 and "pia" in body["error"]
    changed = server.wait_event("group.updated")
    assert '"/in/**"' in changed["attrs"]["before"] and '"/out/**"' in changed["attrs"]["after"]
    assert changed["attrs"]["token"] == "gina-ci"


def test_event_search_filters_and_pages_back(server):
    """The search filters of the API and `wharf events`: protocol, outcome, a range of
    event ids; paging back with `before` through the whole trail, each record once."""
    server.add_account("searcher", password="looking glass phrase 4")
    server.add_ftp_service()
    add_admin(server, "aude", "auditor")
    auditor = token(server, "aude-ci", "aude", "auditor")
    server.start()
    import ftplib
    with pytest.raises(ftplib.error_perm):
        server.ftp("searcher", "not the password")
    (server.root / "f.txt").write_text("x")
    server.sftp("searcher", "put f.txt /f.txt\n")
    server.wait_event("upload.finished", account="searcher")

    status, body = api(server, "GET", "/api/v1/events?protocol=ftp&outcome=failure", auditor)
    assert status == 200 and body["events"], body
    assert {e["name"] for e in body["events"]} == {"login.failed"}, body
    status, body = api(server, "GET", "/api/v1/events?id=30000-30099&account=searcher", auditor,
                       host="::1")
    assert status == 200 and {e["name"] for e in body["events"]} == {"upload.started", "upload.finished"}
    status, body = api(server, "GET", "/api/v1/events?outcome=success&protocol=ftp&id=20011", auditor)
    assert status == 200 and body["events"] == [] and body["next_before"] is None
    for bad in ("id=abc", "id=30099-30000", "outcome=maybe", "after=1&before=9"):
        status, body = api(server, "GET", f"/api/v1/events?{bad}", auditor)
        assert status == 422 and "error" in body, (bad, body)

    # Paging back, three at a time, gives the whole trail once, in order.
    status, newest = api(server, "GET", "/api/v1/events?limit=1000", auditor)
    everything = [e["seq"] for e in newest["events"]]
    seen, before = [], None
    while True:
        status, page = api(server, "GET", "/api/v1/events?limit=3" + (f"&before={before}" if before else ""), auditor)
        assert status == 200, page
        seqs = [e["seq"] for e in page["events"]]
        seen = seqs + seen
        if page["next_before"] is None:
            break
        before = page["next_before"]
    # The Manager's own connections add records meanwhile: those before the walk began
    # are each seen once, in order.
    assert [s for s in seen if s <= everything[-1]] == everything, (seen, everything)
    assert len(seen) == len(set(seen)), seen

    out = server.wharf("events", "--json", "--protocol", "ftp", "--outcome", "failure", check=True).stdout
    assert {json.loads(line)["name"] for line in out.splitlines()} == {"login.failed"}
    first = json.loads(out.splitlines()[0])["seq"]
    older = server.wharf("events", "--json", "--before", str(first), check=True).stdout
    assert all(json.loads(line)["seq"] < first for line in older.splitlines())
    refused = server.wharf("events", "--id", "12-x")
    assert refused.returncode != 0 and "--id" in refused.stderr


def test_groups_in_the_console(server):
    """An operator creates a group from the console with rules and protocols, edits them,
    cannot remove it while it has a member, then removes it; an auditor sees it only."""
    add_admin(server, "oscar", "operator")
    add_admin(server, "aude", "auditor")
    server.start()
    console = Browser(server, host="::1")
    console.login("oscar", PASSWORD)
    console.request("GET", "/groups")
    status, headers, _, _ = console.request("POST", "/groups", form={
        "csrf": console.csrf, "name": "carriers", "rules": "/in/** allow list,write",
        "home_template": str(server.homes) + "/${USER}", "create_home": "on",
        "protocol-sftp": "on", "protocol-ftps": "on"})
    assert status == 303 and headers["Location"] == "/groups/carriers"
    made = server.wait_event("group.created")
    assert made["attrs"]["admin"] == "oscar" and '"sftp"' in made["attrs"]["after"], made
    server.wharf("account", "add", "truck", "--group", "carriers", check=True)
    status, _, page, _ = console.request("GET", "/groups/carriers")
    assert status == 200 and "truck" in page and "/in/** allow list,write" in page
    status, _, _, _ = console.request("POST", "/groups/carriers", form={
        "csrf": console.csrf, "action": "change", "rules": "/out/** allow list,read",
        "protocol-sftp": "on"})
    assert status == 303
    shown = json.loads(server.wharf("group", "show", "carriers", "--json", check=True).stdout)
    assert [r["pattern"] for r in shown["rules"]] == ["/out/**"] and shown["protocols"] == ["sftp"]
    status, _, page, _ = console.request("POST", "/groups/carriers", form={
        "csrf": console.csrf, "action": "remove"})
    assert status == 409 and "member" in page
    status, _, page, _ = console.request("POST", "/groups", form={
        "csrf": console.csrf, "name": "bad", "rules": "/x allow fly"})
    assert status == 422
    viewer = Browser(server)
    viewer.login("aude", PASSWORD)
    status, _, page, _ = viewer.request("GET", "/groups")
    assert status == 200 and "carriers" in page and "Create group" not in page
    status, _, _, _ = viewer.request("POST", "/groups/carriers", form={
        "csrf": viewer.csrf, "action": "remove"})
    assert status == 403
    server.wharf("account", "remove", "truck", check=True)
    status, headers, _, _ = console.request("POST", "/groups/carriers", form={
        "csrf": console.csrf, "action": "remove"})
    assert status == 303 and headers["Location"] == "/groups"
    assert server.wait_event("group.removed")["attrs"]["admin"] == "oscar"


def test_cluster_configuration_in_the_console(server):
    """An administrator checks a revision of the shared sections (problems per line and a
    diff), publishes it, and the running server applies it at once; a publish from a stale
    page is refused; an operator may not even read it."""
    add_admin(server, "nadia", "admin")
    add_admin(server, "otto", "operator")
    server.start()
    console = Browser(server)
    console.login("nadia", PASSWORD)
    status, _, page, _ = console.request("GET", "/configuration/cluster")
    assert status == 200 and "No revision was published yet" in page
    status, _, page, _ = console.request("POST", "/configuration/cluster", form={
        "csrf": console.csrf, "action": "check", "head": "0",
        "text": "[ban]\r\nthreshold = 0\r\n"})
    assert status == 200 and "ban.threshold" in page and "must be at least 1" in page
    assert 'class="added">+ threshold = 0' in page
    status, _, page, _ = console.request("POST", "/configuration/cluster", form={
        "csrf": console.csrf, "action": "publish", "head": "0",
        "text": "[ban]\r\nthreshold = 0\r\n"})
    assert status == 422 and "Not published" in page
    status, _, page, _ = console.request("POST", "/configuration/cluster", form={
        "csrf": console.csrf, "action": "publish", "head": "0",
        "text": "[password_policy]\r\nmin_length = 20\r\n"})
    assert status == 200 and "revision 1 published; this node applied it" in page, page
    assert "Revision <strong>1</strong>, published by nadia" in page
    applied = server.wait_event("configuration.reloaded")
    assert applied["attrs"]["revision"] == "1" and applied["attrs"]["published_by"] == "nadia"
    published = server.wait_event("cluster.configuration.published")
    assert published["attrs"]["admin"] == "nadia" and published["remote"].startswith("127.0.0.1:")
    # The revision's policy is the one new passwords meet now, from the CLI too.
    short = server.wharf("account", "add", "pat", "--password-stdin",
                         input="sixteen chars ok\n")
    assert short.returncode != 0 and "20" in short.stderr, short.stderr
    # Another page still showing revision 0 cannot publish over revision 1.
    status, _, page, _ = console.request("POST", "/configuration/cluster", form={
        "csrf": console.csrf, "action": "publish", "head": "0", "text": "[ban]\nthreshold = 9\n"})
    assert status == 409 and "revision 1 was published" in page
    # A head no store could hold is refused, not wrapped around.
    for head in ("9223372036854775807", "-1"):
        for action in ("check", "publish"):
            status, _, page, _ = console.request("POST", "/configuration/cluster", form={
                "csrf": console.csrf, "action": action, "head": head, "text": "[ban]\n"})
            assert status == 422 and "give the revision read" in page, (head, action, status)
    operator = Browser(server, host="::1")
    operator.login("otto", PASSWORD)
    status, _, _, _ = operator.request("GET", "/configuration/cluster")
    assert status == 403
