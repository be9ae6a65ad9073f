"""Event handlers with real clients: signature checks, dispatch, quarantine, UUID prefixes,
programs and webhooks, and the durable queue across a `kill -9`."""

import hashlib
import hmac
import http.server
import json
import os
import signal
import stat
import subprocess
import threading
import time

import pytest

from conftest import free_port

PASSWORD = "handlers-test-password-1"


def make_key(root):
    """An RSA key pair made with openssl; answers (private, public) PEM paths."""
    private = root / "partner.key"
    public = root / "partner.pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(private)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)],
                   check=True, capture_output=True)
    return private, public


def sign(private, path, out, base64_text=False):
    """A detached RSASSA-PSS signature (SHA-256, salt length = digest length)."""
    digest = path.with_name(path.name + ".sha256")
    subprocess.run(["openssl", "dgst", "-sha256", "-binary", "-out", str(digest), str(path)], check=True)
    subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", str(private), "-in", str(digest),
                    "-out", str(out), "-pkeyopt", "digest:sha256",
                    "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest"],
                   check=True)
    digest.unlink()
    if base64_text:
        text = subprocess.run(["openssl", "base64", "-in", str(out)], check=True,
                              capture_output=True).stdout
        out.write_bytes(text)
    return out


def partners_group(server):
    # Partners may do everything but upload executables.
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--deny", r"re:\.exe$=write", "--allow", "/**=all", check=True)


def configure(server, text):
    with open(server.root / "wharf.toml", "a") as f:
        f.write(text)


def names(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def wait_for(predicate, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def handler_events(server, name, path=None):
    return [e for e in server.events() if e["name"] == name
            and (path is None or e.get("path") == path)]


SIGNATURE_HANDLER = """
[[handler]]
name = "partner-signatures"
on = ["upload.finished"]
groups = ["partners"]
path = "/upload/*"

[handler.verify-signature]
keys = ["{public}"]
wait = 4
move_to = "${{HOME}}/incoming/${{NAME}}"

[[handler]]
name = "route-valid"
on = ["signature.valid"]

[handler.dispatch]
[[handler.dispatch.rule]]
path = "*.csv"
to = "{finance}/${{USER}}/${{NAME}}"
"""


@pytest.mark.parametrize("protocol", ["sftp", "ftps"])
def test_signed_files_move_on_and_the_rest_is_quarantined(server, protocol):
    private, public = make_key(server.root)
    partners_group(server)
    home = server.add_account("acme", password=PASSWORD, groups=["partners"])
    finance = server.root / "finance"
    configure(server, SIGNATURE_HANDLER.format(public=public, finance=finance))
    server.start()
    outbox = server.root / "outbox"
    outbox.mkdir()
    (outbox / "good.csv").write_bytes(b"id,amount\n1,100\n")
    sign(private, outbox / "good.csv", outbox / "good.csv.sig")
    (outbox / "text.csv").write_bytes(b"id,amount\n2,200\n")
    sign(private, outbox / "text.csv", outbox / "text.csv.sig", base64_text=True)
    (outbox / "bad.csv").write_bytes(b"id,amount\n3,300\n")
    sign(private, outbox / "good.csv", outbox / "bad.csv.sig")  # a signature of other bytes
    (outbox / "unsigned.csv").write_bytes(b"id,amount\n4,400\n")
    (outbox / "tool.exe").write_bytes(b"MZ")
    files = ["good.csv", "good.csv.sig", "text.csv", "text.csv.sig", "bad.csv", "bad.csv.sig",
             "unsigned.csv"]

    if protocol == "sftp":
        script = "mkdir upload\n" + "".join(f"put {outbox / n} upload/{n}\n" for n in files)
        server.sftp("acme", script)
        refused = server.sftp("acme", f"put {outbox / 'tool.exe'} upload/tool.exe\n", check=False)
        assert refused.returncode != 0
    else:
        client = server.ftp_client("ftps", "acme", PASSWORD)
        client.mkd("upload")
        for n in files:
            with open(outbox / n, "rb") as f:
                client.storbinary(f"STOR upload/{n}", f)
        with pytest.raises(Exception, match="550"):
            with open(outbox / "tool.exe", "rb") as f:
                client.storbinary("STOR upload/tool.exe", f)
        client.quit()

    incoming = home / "incoming"
    quarantine = server.root / "wharf-data" / "quarantine"
    wait_for(lambda: len(handler_events(server, "file.quarantined")) >= 2, what="two quarantines")
    wait_for(lambda: len(handler_events(server, "file.dispatched")) >= 2, what="two dispatched")

    # Valid files moved on with their signatures, then a chained dispatch took the files.
    assert names(incoming) == ["good.csv.sig", "text.csv.sig"]
    assert names(finance / "acme") == ["good.csv", "text.csv"]
    assert (finance / "acme" / "good.csv").read_bytes() == b"id,amount\n1,100\n"
    dispatched = {e["path"]: e for e in handler_events(server, "file.dispatched")}
    assert dispatched["/upload/good.csv"]["attrs"]["handler"] == "route-valid"
    assert dispatched["/upload/good.csv"]["attrs"]["depth"] == "2"
    assert names(home / "upload") == []
    held = names(quarantine)
    assert len(held) == 5, held  # bad.csv, its signature, unsigned.csv, and two sidecars
    sidecars = {p: json.loads((quarantine / p).read_text()) for p in held if p.endswith(".json")}
    reasons = {s["event"]["path"]: s["reason"] for s in sidecars.values()}
    assert reasons["/upload/bad.csv"] == "the signature does not verify with any configured key"
    assert reasons["/upload/unsigned.csv"] == "no signature unsigned.csv.sig within 4 s"
    for sidecar in sidecars.values():
        assert sidecar["handler"] == "partner-signatures"
        assert (quarantine / os.path.basename(sidecar["quarantined_as"])).is_file()
    assert stat.S_IMODE(quarantine.stat().st_mode) == 0o700

    valid = {e["path"]: e for e in handler_events(server, "signature.valid")}
    assert valid["/upload/good.csv"]["attrs"]["key"] == "partner.pub.pem"
    assert valid["/upload/good.csv"]["attrs"]["destination"] == str(incoming / "good.csv")
    assert valid["/upload/good.csv"]["account"] == "acme"
    assert valid["/upload/good.csv"]["protocol"] == protocol
    invalid = {e["path"]: e for e in handler_events(server, "signature.invalid")}
    assert set(invalid) == {"/upload/bad.csv", "/upload/unsigned.csv"}
    assert all(e["outcome"] == "failure" for e in invalid.values())
    # The signatures themselves started no job, and the refused executable left no file.
    assert not any(e["path"].endswith(".sig") for e in handler_events(server, "handler.failed"))
    denied = handler_events(server, "permission.denied")
    assert any(e.get("path") == "/upload/tool.exe" and e["attrs"]["verb"] == "write" for e in denied)
    assert "tool.exe" not in names(home / "upload")


DISPATCH_HANDLER = """
[[handler]]
name = "route-reports"
on = ["upload.finished"]
delay = 3

[handler.dispatch]
unmatched = "quarantine"

[[handler.dispatch.rule]]
path = "*.csv"
to = "{out}/reports/${{USER}}/${{DATE}}/${{NAME}}"

[[handler.dispatch.rule]]
path = "/archive/**"
copy = true
to = "{out}/archive/${{UUID}}-${{NAME}}"
"""


@pytest.mark.parametrize("protocol", ["sftp", "ftps"])
def test_dispatch_after_kill_9_completes_exactly_once(server, protocol):
    server.add_account("acme", password=PASSWORD)
    out = server.root / "dispatched"
    configure(server, DISPATCH_HANDLER.format(out=out))
    server.start()
    local = server.root / "q1.csv"
    local.write_bytes(b"quarter,total\nq1,10\n")
    if protocol == "sftp":
        server.sftp("acme", f"put {local} q1.csv\n")
    else:
        client = server.ftp_client("ftps", "acme", PASSWORD)
        with open(local, "rb") as f:
            client.storbinary("STOR q1.csv", f)
        client.quit()
    server.wait_event("upload.finished", path="/q1.csv")
    # The job is queued and due in 3 s: kill the server before it runs.
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    home = server.homes / "acme"
    assert names(home) == ["q1.csv"]
    assert not handler_events(server, "file.dispatched")

    server.start()
    wait_for(lambda: handler_events(server, "file.dispatched"), what="the dispatch")
    date = time.strftime("%Y-%m-%d", time.gmtime())
    target = out / "reports" / "acme" / date / "q1.csv"
    assert target.read_bytes() == b"quarter,total\nq1,10\n"
    assert names(home) == []
    # Kill and restart once more: nothing runs twice.
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server.start()
    time.sleep(4)
    dispatched = handler_events(server, "file.dispatched")
    assert len(dispatched) == 1, dispatched
    assert dispatched[0]["attrs"]["destination"] == str(target)
    assert dispatched[0]["attrs"]["rule"] == "1"

    # A copy rule keeps the source; an unmatched file goes to quarantine.
    (server.root / "doc.txt").write_bytes(b"kept")
    (server.root / "odd.bin").write_bytes(b"odd")
    server.sftp("acme", f"mkdir archive\nput {server.root / 'doc.txt'} archive/doc.txt\n"
                        f"put {server.root / 'odd.bin'} odd.bin\n")
    wait_for(lambda: len(handler_events(server, "file.dispatched")) == 2, what="the copy")
    wait_for(lambda: handler_events(server, "file.quarantined"), what="the quarantine")
    copies = names(out / "archive")
    assert len(copies) == 1 and copies[0].endswith("-doc.txt")
    assert (home / "archive" / "doc.txt").read_bytes() == b"kept"
    quarantined = handler_events(server, "file.quarantined")[0]
    assert quarantined["path"] == "/odd.bin"
    assert quarantined["message"] == "no dispatch rule matched"


RECORDER = """#!/usr/bin/python3
import json, os, sys
record = json.load(sys.stdin)
out = {"argv": sys.argv[1:], "env": dict(os.environ), "seq": record["seq"], "path": record["path"]}
with open(os.path.join(%r, "run-%%d.json" %% record["seq"]), "w") as f:
    json.dump(out, f)
print("recorded", record["path"])
"""

HOSTILE = ["; rm -rf ~", "$(id)", "`id`", "-rf", "--help", "it's \"quoted\" & <odd>"]


def test_exec_gets_hostile_names_as_single_arguments(server):
    server.add_account("acme", password=PASSWORD)
    runs = server.root / "runs"
    runs.mkdir()
    program = server.root / "record.py"
    program.write_text(RECORDER % str(runs))
    program.chmod(0o755)
    configure(server, f"""
[[handler]]
name = "record"
on = ["upload.finished"]
path = "/drop/*"

[handler.exec]
program = "{program}"
args = ["--name", "${{NAME}}", "${{PATH}}", "${{USER}} ${{SHA256}}"]
""")
    server.start()
    client = server.paramiko("acme")
    sftp = client.open_sftp()
    sftp.mkdir("/drop")
    for name in HOSTILE:
        with sftp.open("/drop/" + name, "wb") as f:
            f.write(name.encode())
    # A newline never becomes part of a name: the core refuses control characters in paths
    # for every protocol, so no handler sees one (the exec unit test passes one through).
    with pytest.raises(OSError, match="control character"):
        sftp.open("/drop/a\nb.txt", "wb")
    sftp.close()
    client.close()
    wait_for(lambda: len(list(runs.iterdir())) == len(HOSTILE), what="every program run")
    seen = {}
    for run in runs.iterdir():
        data = json.loads(run.read_text())
        seen[data["argv"][1]] = data
    assert sorted(seen) == sorted(HOSTILE)
    for name, data in seen.items():
        sha = hashlib.sha256(name.encode()).hexdigest()
        assert data["argv"] == ["--name", name, "/drop/" + name, f"acme {sha}"]
        assert data["path"] == "/drop/" + name
        assert set(data["env"]) - {"PATH", "LC_CTYPE"} <= {k for k in data["env"] if k.startswith("WHARF_")}
        assert data["env"]["WHARF_NAME"] == name
        assert data["env"]["WHARF_USER"] == "acme"
        assert "HOME" not in data["env"]
    # Nothing was run by a shell: the home still holds every file.
    assert len(names(server.homes / "acme" / "drop")) == len(HOSTILE)
    wait_for(lambda: len(handler_events(server, "program.ran")) == len(HOSTILE), what="events")
    ran = handler_events(server, "program.ran")
    assert all(e["message"].startswith("recorded /drop/") for e in ran)


class Receiver(http.server.BaseHTTPRequestHandler):
    answers = []
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.seen.append((self.headers, body))
        status = Receiver.answers.pop(0) if Receiver.answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_is_signed_and_retried(server):
    server.add_account("acme", password=PASSWORD)
    secret = b"a-webhook-secret-of-some-length"
    (server.root / "hook.secret").write_bytes(secret + b"\n")
    port = free_port()
    Receiver.answers = [503]
    Receiver.seen = []
    httpd = http.server.HTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        configure(server, f"""
[[handler]]
name = "notify"
on = ["upload.finished"]
retry_wait = 1
timeout = 5

[handler.webhook]
url = "http://127.0.0.1:{port}/wharf"
secret = "file:hook.secret"
""")
        server.start()
        local = server.root / "x.txt"
        local.write_bytes(b"payload")
        server.sftp("acme", f"put {local} x.txt\n")
        delivered = server.wait_event("webhook.delivered", timeout=20)
    finally:
        httpd.shutdown()
    assert len(Receiver.seen) == 2
    (first_headers, first_body), (headers, body) = Receiver.seen
    assert headers["X-Wharf-Delivery"] == first_headers["X-Wharf-Delivery"]
    assert headers["X-Wharf-Event"] == "upload.finished"
    fields = dict(part.split("=", 1) for part in headers["X-Wharf-Signature"].split(","))
    expected = hmac.new(secret, fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["sha256"], expected)
    assert abs(int(fields["t"]) - time.time()) < 60
    record = json.loads(body)
    assert record["name"] == "upload.finished" and record["path"] == "/x.txt"
    assert record["sha256"] == hashlib.sha256(b"payload").hexdigest()
    retry = server.wait_event("handler.retrying")
    assert "503" in retry["message"]
    assert delivered["attrs"]["delivery"] == headers["X-Wharf-Delivery"]
    jobs = [json.loads(l) for l in server.wharf("handler", "jobs", "--json", check=True).stdout.splitlines()]
    assert [(j["handler"], j["state"], j["attempts"]) for j in jobs] == [("notify", "done", 1)]


def test_uuid_prefix_keeps_duplicates_apart(server):
    server.add_account("acme", password=PASSWORD)
    configure(server, """
[[handler]]
name = "unique-names"
on = ["upload.finished"]
path = "/inbox/*"

[handler.uuid-prefix]
""")
    server.start()
    local = server.root / "same.txt"
    for content in (b"first", b"second"):
        local.write_bytes(content)
        server.sftp("acme", f"-mkdir inbox\nput {local} inbox/same.txt\n")
        # The unique name is given as the upload commits; the handler then records it.
        assert "same.txt" not in names(server.homes / "acme" / "inbox")
    wait_for(lambda: len(handler_events(server, "file.prefixed")) == 2, what="both outcomes")
    held = names(server.homes / "acme" / "inbox")
    assert len(held) == 2 and all(n.endswith("-same.txt") and len(n) == 36 + 1 + 8 for n in held)
    contents = sorted((server.homes / "acme" / "inbox" / n).read_bytes() for n in held)
    assert contents == [b"first", b"second"]
    prefixed = handler_events(server, "file.prefixed")
    assert sorted(e["path2"] for e in prefixed) == sorted("/inbox/" + n for n in held)


def test_handler_configuration_errors_name_the_line(server):
    configure(server, """
[[handler]]
name = "broken"
on = ["upload.finishd"]

[handler.uuid-prefix]

[[handler]]
name = "no-key"
on = ["upload.finished"]

[handler.verify-signature]
keys = ["missing.pem"]

[[handler]]
name = "shell"
on = [30002]

[handler.exec]
program = "sh"
args = ["${NOPE}"]
""")
    result = server.wharf("check-config")
    assert result.returncode != 0
    err = result.stderr
    assert "handler[0].on" in err and "upload.finishd" in err
    assert "handler[1].verify-signature.keys" in err and "missing.pem" in err
    assert "handler[2].exec.program" in err and "absolute path" in err
    text = (server.root / "wharf.toml").read_text().splitlines()
    line = next(i for i, l in enumerate(text, 1) if "upload.finishd" in l)
    assert f"wharf.toml:{line}: handler[0].on" in err


def test_a_webhook_secret_is_read_by_the_server_not_by_every_command(server):
    configure(server, """
[[handler]]
name = "notify"
on = ["upload.finished"]

[handler.webhook]
url = "http://127.0.0.1:9/hook"
secret = "env:WHARF_TEST_SECRET_NOT_SET"
""")
    env_free = server.wharf("events", "--limit", "1")
    assert env_free.returncode == 0, env_free.stderr
    checked = server.wharf("check-config")
    assert checked.returncode == 1
    assert "handler[0].webhook.secret" in checked.stderr
    assert "WHARF_TEST_SECRET_NOT_SET is not set" in checked.stderr
