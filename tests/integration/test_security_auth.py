"""Logins held against an attacker, with real clients (curl over HTTPS, paramiko, OpenSSH
sftp), a real slapd and a real HTTPS authentication service (the helpers of
test_auth_ldap.py and test_auth_http.py):

- a remembered HTTP Basic login is checked again on every request: an address the account
  may not use is refused even after a request from one it may use, and a disabled account
  stops at once (bearer tokens likewise);
- every record names the connection its own request came on, and acts in its own
  protocol (a token made over the REST API follows no link under `/dav/`);
- a password with a one-time code appended is not accepted again from another connection
  or address;
- homes given by the directory (`homeDirectory: /`) or the HTTP service (`/etc`,
  `/x/../../../etc`, `/`, relative) are refused unless beneath the home roots;
- `LARA` is lara: one directory user, one account (home, events, handlers), and an HTTP
  service may name the account;
- `http://` to another host is refused by check-config; `group_map` maps in the order
  written.
"""

import json
import re
import subprocess

import paramiko
import pytest

from logins import https_status, sftp_password
from test_auth_http import HAL_PASSWORD, chain  # noqa: F401 (chain: a fixture used below)
from test_auth_ldap import (  # noqa: F401 (directory: a fixture used below)
    ADMIN_PASSWORD,
    BASE,
    LARA_PASSWORD,
    MIKE_PASSWORD,
    Slapd,
    directory,
    search_then_bind,
    use_chain,
)
from test_totp import enrol, fresh_code

PASSWORD = "correct horse battery staple"


def requests(server, host, user=None, password=None, paths=("/api/v1/files",), extra=()):
    """Sends `paths` in one curl run from `host` (127.0.0.1 or ::1), so they share one
    connection; answers, per request, (status, the client's address as Wharf records it,
    whether it opened a new connection)."""
    cmd = ["curl", "-sk", "-g", "-w", "%{http_code} %{local_ip} %{local_port} %{num_connects}\\n",
           *extra]
    if user is not None:
        cmd += ["-u", f"{user}:{password}"]
    bracketed = f"[{host}]" if ":" in host else host
    for path in paths:
        cmd += ["-o", "/dev/null", f"https://{bracketed}:{server.https_port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    answers = []
    for line in out.splitlines():
        status, ip, port, connects = line.split()
        remote = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        answers.append((status, remote, connects != "0"))
    assert len(answers) == len(paths), out
    return answers


def status(server, host, user, password, path="/api/v1/files", extra=()):
    return requests(server, host, user, password, (path,), extra)[0][0]


def sftp_session(server, user, password):
    """Logs in with paramiko and opens an SFTP session (which creates the home)."""
    client = sftp_password(server, user, password)
    client.open_sftp().listdir(".")
    client.close()


def failures(server, account):
    return [e for e in server.events() if e["name"] == "login.failed" and e["account"] == account]


def test_a_remembered_basic_login_passes_the_address_rules_on_every_request(server):
    server.add_account("dave", password=PASSWORD)
    server.wharf("account", "set", "dave", "--allow-from", "127.0.0.1", check=True)
    server.start()
    assert status(server, "::1", "dave", PASSWORD) == "401"
    assert status(server, "127.0.0.1", "dave", PASSWORD) == "200"
    # The attack: the same credentials from ::1 while the login from 127.0.0.1 is remembered.
    assert status(server, "::1", "dave", PASSWORD) == "401"
    refused = failures(server, "dave")
    assert [e["attrs"]["cause"] for e in refused] == ["address-not-allowed"] * 2
    assert all(e["remote"].startswith("[::1]:") for e in refused)

    # A token made from 127.0.0.1 is refused from ::1 too.
    token = subprocess.run(
        ["curl", "-sk", "-u", f"dave:{PASSWORD}", "-X", "POST",
         f"https://127.0.0.1:{server.https_port}/api/v1/token"],
        capture_output=True, text=True, timeout=30).stdout
    bearer = ("-H", f"Authorization: Bearer {json.loads(token)['token']}")
    assert status(server, "127.0.0.1", None, None, extra=bearer) == "200"
    assert status(server, "::1", None, None, extra=bearer) == "401"
    by_token = failures(server, "dave")[-1]
    assert by_token["attrs"]["method"] == "token" and by_token["attrs"]["cause"] == "address-not-allowed"

    # Disabling the account takes effect at once, for the remembered login and the token.
    server.wharf("account", "disable", "dave", check=True)
    assert status(server, "127.0.0.1", "dave", PASSWORD) == "401"
    assert status(server, "127.0.0.1", None, None, extra=bearer) == "401"
    assert [e["attrs"]["cause"] for e in failures(server, "dave")[-2:]] == ["disabled"] * 2


def test_every_record_names_its_own_requests_connection(server):
    server.add_account("erin", password=PASSWORD)
    server.start()
    src = server.root / "up.txt"
    src.write_text("where from?\n")
    sent = []
    for i, host in enumerate(["127.0.0.1", "::1", "127.0.0.1", "::1"]):
        [(code, remote, _)] = requests(server, host, "erin", PASSWORD, (f"/api/v1/files/r{i}.txt",),
                                       extra=("-T", str(src)))
        assert code == "201"
        sent.append(remote)
    uploads = {e["path"]: e for e in server.events() if e["name"] == "upload.finished"}
    assert [uploads[f"/r{i}.txt"]["remote"] for i in range(4)] == sent
    # The password was checked once; the other requests used the remembered login.
    assert len([e for e in server.events() if e["name"] == "login.succeeded"]) == 1


def test_a_token_made_over_the_api_acts_as_webdav_under_dav(server):
    home = server.add_account("fay", password=PASSWORD)
    server.start()
    token = subprocess.run(
        ["curl", "-sk", "-u", f"fay:{PASSWORD}", "-X", "POST",
         f"https://127.0.0.1:{server.https_port}/api/v1/token"],
        capture_output=True, text=True, timeout=30).stdout
    bearer = ("-H", f"Authorization: Bearer {json.loads(token)['token']}")
    home.mkdir(parents=True, exist_ok=True)
    (home / "mine.txt").write_text("mine\n")
    (home / "link").symlink_to("mine.txt")
    # WebDAV follows no link, whichever login opened the session; the REST API does.
    assert status(server, "::1", None, None, "/dav/link", extra=bearer) == "404"
    assert status(server, "::1", None, None, "/api/v1/files/link", extra=bearer) == "200"
    assert status(server, "::1", None, None, "/dav/mine.txt", extra=bearer) == "200"
    downloads = [e for e in server.events() if e["name"] == "download.started"]
    assert [e["protocol"] for e in downloads] == ["https", "webdav"]
    assert all(e["remote"].startswith("[::1]:") for e in downloads)


def test_a_password_with_a_one_time_code_is_not_replayed_from_elsewhere(server):
    server.add_account("tara", password=PASSWORD)
    secret, used = enrol(server, "tara")["secret"], set()
    server.start()
    header = PASSWORD + fresh_code(secret, used)
    # Two requests on one connection: the code logs that connection in.
    first, second = requests(server, "127.0.0.1", "tara", header,
                             ("/api/v1/files", "/api/v1/files"))
    assert (first[0], second[0]) == ("200", "200") and not second[2]
    # The same header from another address, then from another connection: the code was used.
    assert status(server, "::1", "tara", header) == "401"
    assert status(server, "127.0.0.1", "tara", header) == "401"
    replayed = failures(server, "tara")
    assert [e["attrs"]["cause"] for e in replayed] == ["wrong-code"] * 2
    assert replayed[0]["remote"].startswith("[::1]:")
    assert replayed[1]["remote"].startswith("127.0.0.1:")
    # A new code logs in again.
    assert status(server, "::1", "tara", PASSWORD + fresh_code(secret, used)) == "200"


def test_a_directory_home_outside_the_roots_is_refused(server):
    key = (server.key.parent / (server.key.name + ".pub")).read_text().strip()
    slapd = Slapd(server.root / "ldap", "/", key)  # lara's homeDirectory: /
    try:
        (server.root / "ldap" / "bind-password").write_text(ADMIN_PASSWORD + "\n")
        server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                     "--create-home", "--allow", "/**=list,read", check=True)
        use_chain(server, search_then_bind(slapd, f"ldaps://127.0.0.1:{slapd.ldaps_port}"))
        server.start()
        with pytest.raises(paramiko.AuthenticationException):
            sftp_password(server, "lara", LARA_PASSWORD)
        assert https_status(server, "lara", LARA_PASSWORD) == "401"
        refused = failures(server, "lara")
        assert len(refused) == 2
        for event in refused:
            assert event["attrs"]["cause"] == "home-outside-roots"
            assert event["attrs"]["authenticator"] == "corp-ldap"
            assert event["message"].startswith("home folder refused: / is not beneath any home root")
        # mike has no homeDirectory: his group's template gives his home, as before.
        sftp_session(server, "mike", MIKE_PASSWORD)
        assert (server.homes / "mike").is_dir()
    finally:
        slapd.stop()


def answering(service, answers):
    """Makes the test_auth_http service answer 200 with `answers[username]` for HAL's
    password, and 401 otherwise."""
    def decide(attempt):
        answer = answers.get(attempt["username"])
        if answer is None or attempt.get("password") != HAL_PASSWORD:
            return 401, None
        return 200, answer

    service.decide = decide


def test_homes_from_the_http_service_are_confined_and_it_may_name_the_account(chain):  # noqa: F811
    server, service = chain
    answering(service, {
        "etc": {"home": "/etc", "groups": ["partners"]},
        "dots": {"home": "/x/../../../etc", "groups": ["partners"]},
        "root": {"home": "/"},
        "rel": {"home": "srv/rel", "groups": ["partners"]},
        "good": {"home": f"{server.homes}/x/../good", "groups": ["partners"]},
        "HAL": {"username": "hal", "groups": ["partners"]},
    })
    for user in ["etc", "dots", "root", "rel"]:
        with pytest.raises(paramiko.AuthenticationException):
            sftp_password(server, user, HAL_PASSWORD)
        assert https_status(server, user, HAL_PASSWORD) == "401"
        refused = failures(server, user)
        assert [e["attrs"]["cause"] for e in refused] == ["home-outside-roots"] * 2, user
        assert all(e["attrs"]["authenticator"] == "partner-api" for e in refused)
    assert "/etc (given as \"/x/../../../etc\")" in failures(server, "dots")[0]["message"]
    assert "not an absolute path" in failures(server, "rel")[0]["message"]

    # A home beneath the roots is used in its normalised form.
    sftp_session(server, "good", HAL_PASSWORD)
    assert (server.homes / "good").is_dir() and not (server.homes / "x").exists()

    # The service names the account: HAL is hal.
    assert https_status(server, "HAL", HAL_PASSWORD) == "200"
    ok = server.wait_event("login.succeeded", protocol="https", account="hal")
    assert ok["attrs"]["login_name"] == "HAL" and ok["attrs"]["authenticator"] == "partner-api"
    assert (server.homes / "hal").is_dir() and not (server.homes / "HAL").exists()


def lara_chain(slapd, group_map=None):
    """The search-then-bind entry of test_auth_ldap.py, with homes from group templates and
    the given group_map (none: every user in the default group `users`)."""
    entry = search_then_bind(slapd, f"ldaps://[::1]:{slapd.ldaps_port}")
    entry = entry.replace('home_attribute = "homeDirectory"\n', "")
    return re.sub(r"group_map = .*\n", group_map or "", entry)


def test_a_directory_user_is_one_account_whatever_case_is_typed(directory):  # noqa: F811
    server, slapd = directory
    use_chain(server, lara_chain(slapd) + """
[[handler]]
name = "lara-only"
on = ["upload.finished"]
accounts = ["lara"]
[handler.exec]
program = "/bin/true"
""")
    server.start()
    src = server.root / "up.txt"
    src.write_text("one person, one account\n")
    server.sftp("LARA", f"put {src} by-sftp.txt")  # her key, from the directory
    [(code, _, _)] = requests(server, "127.0.0.1", "LARA", LARA_PASSWORD,
                              ("/api/v1/files/by-https.txt",), extra=("-T", str(src)))
    assert code == "201"
    assert sorted(p.name for p in (server.homes / "lara").iterdir()) == ["by-https.txt", "by-sftp.txt"]
    assert not (server.homes / "LARA").exists()

    events = server.events()
    uploads = [e for e in events if e["name"] == "upload.finished"]
    assert [e["account"] for e in uploads] == ["lara", "lara"]
    sessions = [e for e in events if e["name"] == "session.started"]
    assert sessions and all(e["account"] == "lara" for e in sessions)
    https_login = [e for e in events if e["name"] == "login.succeeded" and e["protocol"] == "https"]
    assert [(e["account"], e["attrs"]["login_name"]) for e in https_login] == [("lara", "LARA")]
    # The handler filtered on lara ran for both uploads.
    ran = [server.wait_event("program.ran", timeout=20, path=p) for p in ("/by-sftp.txt", "/by-https.txt")]
    assert all(e["attrs"]["handler"] == "lara-only" and e["account"] == "lara" for e in ran)


def test_group_map_maps_in_the_order_written(directory):  # noqa: F811
    server, slapd = directory
    # lara is in a second directory group, mapped to a Wharf group with its own template.
    slapd.stop()
    (slapd.folder / "auditors.ldif").write_text(
        f"dn: cn=auditors,ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: auditors\n"
        f"member: uid=lara,ou=people,{BASE}\n")
    subprocess.run(["/usr/sbin/slapadd", "-f", str(slapd.folder / "slapd.conf"), "-l",
                    str(slapd.folder / "auditors.ldif")], check=True, capture_output=True)
    slapd.start()
    audit = server.root / "audit"
    server.wharf("group", "add", "auditors", "--home-template", f"{audit}/${{USER}}",
                 "--create-home", "--allow", "/**=list,read", check=True)
    # partners is written first, though "cn=auditors" sorts before "cn=partners".
    use_chain(server, lara_chain(slapd, f"""group_map = {{ "cn=partners,ou=groups,{BASE}" = "partners", "CN=Auditors,OU=Groups,{BASE}" = "auditors" }}
"""))
    server.start()
    sftp_session(server, "lara", LARA_PASSWORD)
    assert (server.homes / "lara").is_dir()  # partners' template: the first group mapped
    assert not (audit / "lara").exists()


def check_config_errors(server, extra):
    """Appends `extra` to the configuration; answers check-config's error lines and a
    function giving the start of the error for a key on the line holding a text."""
    with open(server.root / "wharf.toml", "a") as f:
        f.write(extra)
    text = (server.root / "wharf.toml").read_text().splitlines()

    def at(needle, key):
        return f"{server.root / 'wharf.toml'}:{text.index(needle) + 1}: {key}:"

    out = server.wharf("check-config")
    assert out.returncode == 1, out.stderr
    return out.stderr.splitlines(), at


def test_http_to_another_host_is_refused_by_check_config(server):
    (server.root / "hook-secret").write_text("a-webhook-secret-of-enough-bytes\n")
    errors, at = check_config_errors(server, """
[[authentication]]
type = "http"
name = "remote-api"
url = "http://192.0.2.10/check"

[[authentication]]
type = "http"
name = "loopback-v4"
url = "http://127.0.0.1:9/check"

[[authentication]]
type = "http"
name = "loopback-v6"
url = "http://[::1]:9/check"

[[authentication]]
type = "http"
name = "loopback-name"
url = "http://localhost:9/check"

[[authentication]]
type = "local"

[[handler]]
name = "hook"
on = ["upload.finished"]
[handler.webhook]
url = "http://hooks.example.net/wharf"
secret = "file:hook-secret"

[[handler]]
name = "hook-here"
on = ["upload.finished"]
[handler.webhook]
url = "http://127.0.0.1:9/hook"
secret = "file:hook-secret"
""")
    for start in [at('url = "http://192.0.2.10/check"', "authentication[0].url"),
                  at('url = "http://hooks.example.net/wharf"', "handler[0].webhook.url")]:
        assert any(e.startswith(start) and "in clear" in e for e in errors), (start, errors)
    # Loopback addresses and localhost are fine.
    assert len(errors) == 2, errors


def test_home_roots_and_group_map_are_checked_by_check_config(server):
    errors, at = check_config_errors(server, """
[[authentication]]
type = "ldap"
name = "directory"
url = "ldaps://127.0.0.1:636"
bind_template = "uid={user},ou=people,dc=example,dc=org"
home_roots = ["/", "homes"]
group_map = { "cn=a,dc=example,dc=org" = "one", "CN=A, DC=example, DC=org" = "two" }
""")
    roots = at('home_roots = ["/", "homes"]', "authentication[0].home_roots")
    assert any(e.startswith(roots) and "any folder" in e for e in errors), errors
    assert any(e.startswith(roots) and "not an absolute path" in e for e in errors), errors
    twice = at('group_map = { "cn=a,dc=example,dc=org" = "one", "CN=A, DC=example, DC=org" = "two" }',
               "authentication[0].group_map")
    assert any(e.startswith(twice) and "given twice" in e for e in errors), errors
    assert len(errors) == 3, errors
