"""The configuration a cluster shares: a revision published through node a's Manager is in
force on node b within 2 seconds (its ban policy and its handlers), each node records the
revision and who published it, and a revision that does not validate, or one published on
top of a stale read, changes nothing."""

import ftplib
import json
import subprocess
import time

import pytest

from manager_client import Browser, api
from test_manager import first_password
from raw_sockets import first_bytes

PASSWORD = "correct horse battery staple"
ATTACKER = "127.0.0.78"

REVISION = """# Shared by every node.
[ban]
threshold = 2
window = 120
ban_time = 600

[[handler]]
name = "prefix-inbox"
on = ["upload.finished"]
path = "/inbox/*"

[handler.uuid-prefix]
"""


def token(node):
    out = node.wharf("admin", "token", "add", "publisher", "--admin", "admin", "--role",
                     "admin", check=True).stdout.strip()
    assert out.startswith("wharf_"), out
    return out


def put_toml(node, path, text, bearer, host="127.0.0.1"):
    url_host = f"[{host}]" if ":" in host else host
    run = subprocess.run(
        ["curl", "-sk", "-o", "-", "-w", "\n%{http_code}", "-X", "PUT",
         "-H", f"Authorization: Bearer {bearer}", "-H", "Content-Type: application/toml",
         "--data-binary", "@-", f"https://{url_host}:{node.manager_port}{path}"],
        input=text, capture_output=True, text=True, timeout=30)
    body, _, status = run.stdout.rpartition("\n")
    return int(status), json.loads(body)


def wrong_password(node):
    c = ftplib.FTP()
    c.connect("127.0.0.1", node.ftp_port, timeout=15, source_address=(ATTACKER, 0))
    try:
        with pytest.raises(ftplib.error_perm, match="530"):
            c.login("alice", "wrong")
    finally:
        c.close()


def refused(node):
    return first_bytes("127.0.0.1", node.ftp_port, source=ATTACKER).startswith(b"421")


def reloaded(node, revision):
    """The node's own records of applying `revision` (the trail is the whole cluster's)."""
    return [e for e in node.events("--id", "10020", "--node", node.root.name)
            if e["attrs"].get("revision") == str(revision)]


def test_a_revision_published_on_a_is_in_force_on_b_within_two_seconds(cluster):
    a, b = cluster.node("a"), cluster.node("b")
    for node in (a, b):
        node.add_ftp_service()
    a.add_account("alice", password=PASSWORD, key=False)
    a.start()
    b.start()
    bearer = token(a)

    # The nodes, as an auditor sees them: both up, with their services.
    auditor = a.wharf("admin", "token", "add", "watcher", "--admin", "admin", "--role",
                      "auditor", check=True).stdout.strip()
    status, listed = api(a, "GET", "/api/v1/cluster/nodes", token=auditor, host="::1")
    assert status == 200, listed
    by_name = {n["name"]: n for n in listed["nodes"]}
    assert set(by_name) == {"a", "b"} and all(n["state"] == "up" for n in by_name.values())
    assert any(s["name"] == "ftp-plain" for s in by_name["b"]["services"]), by_name["b"]
    # The dashboard lists them too, once there are several.
    console = Browser(a)
    status, _, _ = console.login("admin", first_password(a))
    assert status == 303
    status, _, page, _ = console.request("GET", "/")
    assert status == 200 and 'id="nodes"' in page
    assert "<td>a</td>" in page and "<td>b</td>" in page
    # An auditor reads no cluster configuration and publishes none.
    status, _ = api(a, "GET", "/api/v1/cluster/configuration", token=auditor)
    assert status == 403
    status, _ = put_toml(a, "/api/v1/cluster/configuration", "[ban]\nthreshold = 9\n", auditor)
    assert status == 403

    # Before any revision: revision 0, and the node's own shared sections to start from.
    status, shown = api(a, "GET", "/api/v1/cluster/configuration", token=bearer)
    assert status == 200 and shown["revision"] == 0, shown

    # A revision that does not validate names its line and key, and publishes nothing.
    status, answer = put_toml(a, "/api/v1/cluster/configuration",
                              "[ban]\nthreshold = 0\n", bearer)
    assert status == 422 and not answer["published"], answer
    assert answer["issues"][0]["line"] == 2 and answer["issues"][0]["key"] == "ban.threshold"
    # A node's own section has no place in a revision.
    status, answer = put_toml(a, "/api/v1/cluster/configuration",
                              "[[service]]\nname = \"x\"\n", bearer)
    assert status == 422 and "stay in its wharf.toml" in answer["issues"][0]["message"], answer
    status, history = api(a, "GET", "/api/v1/cluster/configuration/history", token=bearer)
    assert status == 200 and history["revisions"] == [], history

    # Publish on a (over [::1]); b follows within 2 s.
    status, answer = put_toml(a, "/api/v1/cluster/configuration?head=0", REVISION, bearer,
                              host="::1")
    published = time.monotonic()
    assert status == 200 and answer["revision"] == 1 and answer["applied_here"], answer
    while not reloaded(b, 1):
        assert time.monotonic() - published < 2.0, "b did not apply revision 1 within 2 s"
        time.sleep(0.05)
    on_b = reloaded(b, 1)[0]
    assert on_b["node"] == "b" and on_b["attrs"]["published_by"] == "admin", on_b
    assert on_b["attrs"]["handlers"] == "true", on_b
    on_a = reloaded(a, 1)
    assert len(on_a) == 1 and on_a[0]["node"] == "a", on_a  # applied once, not twice
    record = a.wait_event("cluster.configuration.published")
    assert record["attrs"]["admin"] == "admin" and record["attrs"]["token"] == "publisher"
    assert record["attrs"]["revision"] == "1" and "threshold" not in json.dumps(record)

    # b's ban policy is the revision's: two wrong passwords (the file's default is more).
    wrong_password(b)
    wrong_password(b)
    deadline = time.monotonic() + 2
    while not refused(b):
        assert time.monotonic() < deadline, "b did not ban after the revision's threshold"
        time.sleep(0.05)

    # b's handlers are the revision's: an upload into /inbox on b is prefixed.
    client = b.ftp("alice", PASSWORD)
    try:
        client.mkd("inbox")
        client.storbinary("STOR inbox/report.csv", __import__("io").BytesIO(b"a,b\n"))
    finally:
        client.quit()
    prefixed = b.wait_event("file.prefixed")
    assert prefixed["path"] == "/inbox/report.csv", prefixed
    names = [p.name for p in (b.homes / "alice" / "inbox").iterdir()]
    assert len(names) == 1 and names[0].endswith("-report.csv"), names

    # A publish on top of a stale read is refused and changes nothing.
    status, answer = put_toml(a, "/api/v1/cluster/configuration?head=0",
                              "[ban]\nthreshold = 9\n", bearer)
    assert status == 409, answer
    status, shown = api(a, "GET", "/api/v1/cluster/configuration", token=bearer)
    assert shown["revision"] == 1 and shown["text"] == REVISION and shown["published_by"] == "admin"

    # The CLI reads and publishes the same revisions; the next one reaches both nodes.
    shown = b.wharf("cluster", "configuration", "show", check=True).stdout
    assert shown.startswith("# cluster configuration revision 1 (published by admin")
    assert shown.endswith(REVISION)
    revision2 = b.root / "revision2.toml"
    revision2.write_text(shown.replace("threshold = 2", "threshold = 5"))
    b.wharf("cluster", "configuration", "publish", str(revision2), check=True)
    # An edit of what `show` printed before revision 2 cannot publish over it.
    stale = b.root / "stale.toml"
    stale.write_text(shown.replace("threshold = 2", "threshold = 7"))
    stale_publish = b.wharf("cluster", "configuration", "publish", str(stale))
    assert stale_publish.returncode != 0, stale_publish.stdout
    assert "revision 2 was published since revision 1" in stale_publish.stderr
    for node in (a, b):
        deadline = time.monotonic() + 2.5
        while not reloaded(node, 2):
            assert time.monotonic() < deadline, f"{node.root.name} did not apply revision 2"
            time.sleep(0.05)
    history = b.wharf("cluster", "configuration", "history", check=True).stdout
    assert "admin" in history and "cli:" in history, history

    # A revision that needs a secret file only a holds: b refuses it (naming the revision)
    # and keeps revision 2; once the file is there too, b applies it without a new publish.
    (a.root / "hook-secret").write_text("a shared secret of 32 bytes....\n")
    hooked = REVISION + f"""
[[handler]]
name = "notify"
on = ["upload.finished"]

[handler.webhook]
url = "http://127.0.0.1:{a.port}/hook"
secret = "file:hook-secret"
"""
    status, answer = put_toml(a, "/api/v1/cluster/configuration?head=2", hooked, bearer)
    assert status == 200 and answer["revision"] == 3 and answer["applied_here"], answer
    refusal = b.wait_event("configuration.refused", node="b")
    assert refusal["attrs"]["revision"] == "3" and "hook-secret" in refusal["message"], refusal
    assert not reloaded(b, 3)
    (b.root / "hook-secret").write_text("a shared secret of 32 bytes....\n")
    deadline = time.monotonic() + 15
    while not reloaded(b, 3):
        assert time.monotonic() < deadline, "b did not apply revision 3 once its secret was there"
        time.sleep(0.2)

    # A node restarted later starts on the newest revision.
    b.stop()
    b.start()
    started = b.events("--id", "10001", "--node", "b")
    assert len(started) == 2 and "revision" not in started[0].get("attrs", {}), started
    assert started[1]["attrs"]["revision"] == "3", started[1]
