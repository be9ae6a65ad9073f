"""E-mail addresses on accounts and groups: set, shown, changed and cleared through the
commands, `wharf export`/`apply` and the Manager's admin API and pages; an address that is
not one bare address (it goes into a mail header) is refused with what is wrong, and
changes nothing."""

import json
import re

from manager_client import Browser, api

# Each refused address, and a word the refusal says about it.
BAD = [
    ("a b@x.org", "blanks"),
    ("x@y", "needs a dot"),
    ("<x@y.org>", "'<'"),
    ("x@y.org\r\nBcc: z@w.org", "control characters"),
    ("x@y.org,z@w.org", "','"),
    ('"x"@y.org', "'\"'"),
    ("x@y@z.org", "exactly one @"),
    ("@y.org", "nothing before the @"),
]


def shown(server, kind, name):
    return json.loads(server.wharf(kind, "show", name, "--json", check=True).stdout)


def updated(server, kind, target):
    """The newest `KIND.updated` record about `target`."""
    found = [e for e in server.events()
             if e["name"] == f"{kind}.updated" and e["attrs"].get("target") == target]
    assert found, f"no {kind}.updated for {target}"
    return max(found, key=lambda e: e["seq"])


def test_email_through_the_commands(server, tmp_path):
    server.wharf("group", "add", "partners", "--home-template", "/srv/wharf/${USER}",
                 "--email", "partners@example.org", check=True)
    server.wharf("account", "add", "acme", "--group", "partners", "--max-file-size", "1M",
                 "--email", "ops@acme.example", check=True)
    server.wharf("account", "add", "plain", "--group", "partners", check=True)

    assert shown(server, "account", "acme")["email"] == "ops@acme.example"
    assert shown(server, "account", "plain")["email"] is None
    assert shown(server, "group", "partners")["email"] == "partners@example.org"
    assert "e-mail:   ops@acme.example" in server.wharf("account", "show", "acme", check=True).stdout
    assert "e-mail:        partners@example.org" in server.wharf("group", "show", "partners",
                                                                  check=True).stdout
    listed = [json.loads(line) for line in
              server.wharf("account", "list", "--json", check=True).stdout.splitlines()]
    assert {a["name"]: a["email"] for a in listed} == {"acme": "ops@acme.example", "plain": None}
    listed = [json.loads(line) for line in
              server.wharf("group", "list", "--json", check=True).stdout.splitlines()]
    assert {g["name"]: g["email"] for g in listed}["partners"] == "partners@example.org"

    # Changed alone: the event says so, and nothing else moves.
    out = server.wharf("account", "set", "acme", "--email", "it@acme.example", check=True).stdout
    assert "e-mail: it@acme.example" in out
    after = shown(server, "account", "acme")
    assert after["email"] == "it@acme.example" and after["max_file_size"] == 1 << 20
    event = updated(server, "account", "acme")
    assert event["message"] == "e-mail address set to it@acme.example"
    assert json.loads(event["attrs"]["before"])["email"] == "ops@acme.example"
    assert json.loads(event["attrs"]["after"])["email"] == "it@acme.example"

    # With another change, both are named.
    server.wharf("account", "set", "acme", "--max-file-size", "2M", "--email", "ops@acme.example",
                 check=True)
    event = updated(server, "account", "acme")
    assert event["message"] == "access and limits changed; e-mail address set to ops@acme.example"

    # Refused addresses say why and change nothing, on add and on set.
    for bad, said in BAD:
        result = server.wharf("account", "set", "acme", "--email", bad)
        assert result.returncode != 0 and said in result.stderr, (bad, result.stderr)
        assert "e-mail address" in result.stderr
        assert "\r" not in result.stderr and "Bcc: z@w.org\n" not in result.stderr
        result = server.wharf("group", "set", "partners", "--email", bad)
        assert result.returncode != 0 and said in result.stderr, (bad, result.stderr)
    result = server.wharf("account", "add", "nobody", "--group", "partners", "--email", "x@y")
    assert result.returncode != 0 and "needs a dot" in result.stderr
    assert server.wharf("account", "show", "nobody").returncode != 0
    result = server.wharf("group", "add", "nogroup", "--email", "<x@y.org>")
    assert result.returncode != 0 and "'<'" in result.stderr
    assert server.wharf("group", "show", "nogroup").returncode != 0
    assert shown(server, "account", "acme")["email"] == "ops@acme.example"
    assert shown(server, "group", "partners")["email"] == "partners@example.org"

    # Exported where set, applied back unchanged, and checked in a file too.
    exported = server.wharf("export", check=True).stdout
    assert 'email = "ops@acme.example"' in exported and 'email = "partners@example.org"' in exported
    assert exported.count("email =") == 2
    exported_file = tmp_path / "export.toml"
    exported_file.write_text(exported)
    out = server.wharf("apply", str(exported_file), check=True).stdout
    assert out.strip() == "0 created, 0 updated, 4 unchanged"
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text(exported.replace('"ops@acme.example"', '"Ops <ops@acme.example>"'))
    result = server.wharf("apply", str(bad_file))
    assert result.returncode != 0 and "account acme" in result.stderr and "e-mail address" in result.stderr
    assert shown(server, "account", "acme")["email"] == "ops@acme.example"

    # Cleared with "", and the event says so.
    server.wharf("account", "set", "acme", "--email", "", check=True)
    assert shown(server, "account", "acme")["email"] is None
    assert updated(server, "account", "acme")["message"] == "e-mail address removed"
    assert "e-mail:   none" in server.wharf("account", "show", "acme", check=True).stdout
    server.wharf("group", "set", "partners", "--email", "", check=True)
    assert shown(server, "group", "partners")["email"] is None
    assert updated(server, "group", "partners")["message"] == "e-mail address removed"
    assert server.wharf("export", check=True).stdout.count("email =") == 0
    # Nothing to change is still refused, and names the option.
    result = server.wharf("account", "set", "acme")
    assert result.returncode != 0 and "--email" in result.stderr


def test_email_through_the_api(server):
    server.wharf("admin", "add", "oscar", "--role", "operator", "--password-stdin",
                 input="operator pass phrase 1\n", check=True)
    operator = server.wharf("admin", "token", "add", "oscar-ci", "--admin", "oscar", "--role",
                            "operator", check=True).stdout.strip()
    server.start()

    status, body = api(server, "POST", "/api/v1/accounts", operator,
                       {"name": "acme", "password": "partner pass phrase 1", "email": "ops@acme.example"})
    assert status == 201 and body["email"] == "ops@acme.example", body
    status, body = api(server, "GET", "/api/v1/accounts/acme", operator)
    assert status == 200 and body["email"] == "ops@acme.example"
    status, body = api(server, "GET", "/api/v1/accounts", operator)
    assert [a["email"] for a in body["accounts"] if a["name"] == "acme"] == ["ops@acme.example"]
    # An empty address on creation is none.
    status, body = api(server, "POST", "/api/v1/accounts", operator, {"name": "blank", "email": ""})
    assert status == 201 and body["email"] is None, body

    status, body = api(server, "PATCH", "/api/v1/accounts/acme", operator, {"email": "it@acme.example"})
    assert status == 200 and body["email"] == "it@acme.example", body
    changed = server.wait_event("account.updated", account="acme",
                                message="e-mail address set to it@acme.example")
    assert changed["attrs"]["token"] == "oscar-ci"
    # A change that leaves the address out keeps it.
    status, body = api(server, "PATCH", "/api/v1/accounts/acme", operator, {"enabled": False})
    assert status == 200 and body["email"] == "it@acme.example"
    status, body = api(server, "PATCH", "/api/v1/accounts/acme", operator, {"email": None})
    assert status == 200 and body["email"] is None
    status, body = api(server, "PATCH", "/api/v1/accounts/acme", operator, {"email": "ops@acme.example"})
    assert status == 200 and body["email"] == "ops@acme.example"
    status, body = api(server, "PATCH", "/api/v1/accounts/acme", operator, {"email": ""})
    assert status == 200 and body["email"] is None
    assert shown(server, "account", "acme")["email"] is None
    status, body = api(server, "PATCH", "/api/v1/accounts/acme", operator, {"email": "ops@acme.example"})
    assert status == 200

    # Refused: 422 with what is wrong, and nothing changed (with the change it came with).
    changes = ("account.updated", "account.created", "group.created")
    newest = max(e["seq"] for e in server.events())
    for bad, said in BAD:
        status, body = api(server, "PATCH", "/api/v1/accounts/acme", operator,
                           {"enabled": True, "email": bad})
        assert status == 422 and said in body["error"], (bad, body)
        assert "e-mail address" in body["error"] and "\r" not in body["error"]
        status, body = api(server, "POST", "/api/v1/accounts", operator,
                           {"name": "refused", "password": "partner pass phrase 1", "email": bad})
        assert status == 422 and said in body["error"], (bad, body)
        status, body = api(server, "POST", "/api/v1/groups", operator, {"name": "refused", "email": bad})
        assert status == 422 and said in body["error"], (bad, body)
    status, body = api(server, "GET", "/api/v1/accounts/acme", operator)
    assert body["email"] == "ops@acme.example" and body["enabled"] is False
    assert api(server, "GET", "/api/v1/accounts/refused", operator)[0] == 404
    assert api(server, "GET", "/api/v1/groups/refused", operator)[0] == 404
    assert not [e for e in server.events() if e["seq"] > newest and e["name"] in changes]
    # Not a string at all: refused by the body's shape.
    status, body = api(server, "PATCH", "/api/v1/accounts/acme", operator, {"email": ["a@b.org"]})
    assert status in (400, 422), body

    # Groups alike.
    status, body = api(server, "POST", "/api/v1/groups", operator,
                       {"name": "partners", "home_template": str(server.homes) + "/${USER}",
                        "email": "partners@example.org"})
    assert status == 201 and body["email"] == "partners@example.org", body
    status, body = api(server, "GET", "/api/v1/groups/partners", operator)
    assert body["email"] == "partners@example.org"
    status, body = api(server, "PATCH", "/api/v1/groups/partners", operator, {"email": "team@example.org"})
    assert status == 200 and body["email"] == "team@example.org"
    server.wait_event("group.updated", message="e-mail address set to team@example.org")
    for bad, said in BAD:
        status, body = api(server, "PATCH", "/api/v1/groups/partners", operator, {"email": bad})
        assert status == 422 and said in body["error"], (bad, body)
    status, body = api(server, "GET", "/api/v1/groups", operator)
    assert [g["email"] for g in body["groups"] if g["name"] == "partners"] == ["team@example.org"]

    # The console shows both (escaped like everything it shows).
    browser = Browser(server)
    password = re.search(r"Password \(shown once, stored only as a hash\): (\S+)",
                         server.admin_output).group(1)
    browser.login("admin", password)
    status, _, page, _ = browser.request("GET", "/accounts/acme")
    assert status == 200 and "<th>e-mail</th><td>ops@acme.example</td>" in page
    status, _, page, _ = browser.request("GET", "/groups/partners")
    assert status == 200 and "<dt>E-mail</dt><dd>team@example.org</dd>" in page

    status, body = api(server, "PATCH", "/api/v1/groups/partners", operator, {"email": None})
    assert status == 200 and body["email"] is None
    assert shown(server, "group", "partners")["email"] is None
    status, body = api(server, "PATCH", "/api/v1/groups/partners", operator, {})
    assert status == 422 and "email" in body["error"]
