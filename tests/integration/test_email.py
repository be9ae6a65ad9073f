"""E-mail handlers against a real SMTP server started here (Python's aiosmtpd): STARTTLS
with authentication, implicit TLS, batching of a burst into one message, and recipients
read from the accounts' addresses."""

import email
import email.policy
import json
import ssl
import subprocess
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from conftest import free_port
from test_handlers import configure, handler_events, wait_for

PASSWORD = "email-test-password-1"
SMTP_PASSWORD = "smtp-pass-for-wharf-1"


class Mailbox:
    """What the SMTP server received."""

    def __init__(self):
        self.messages = []
        self.logins = []
        self.lock = threading.Lock()
        self.refuse = 0  # how many of the next messages are answered 451 (try again later)
        self.refused = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                self.refused.append({"at": time.time(), "message": message})
                return "451 4.3.0 Try again later"
            self.messages.append({
                "at": time.time(),
                "from": envelope.mail_from,
                "rcpt": sorted(envelope.rcpt_tos),
                "tls": session.ssl is not None,
                "message": message,
            })
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"wharf" and auth_data.password == SMTP_PASSWORD.encode()
        with self.lock:
            self.logins.append((mechanism, auth_data.login, ok, session.ssl is not None))
        return AuthResult(success=ok)


def certificate(root):
    """A CA of the test, and the SMTP server's certificate for 127.0.0.1 signed by it."""
    ca_key, ca, key, csr, cert = (root / n for n in ("ca.key", "ca.pem", "smtp.key", "smtp.csr", "smtp.pem"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=Wharf test mail CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1")
    ext = root / "smtp.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return ca, context


@pytest.fixture
def smtp(tmp_path):
    """Two servers sharing one mailbox: STARTTLS required with AUTH, and implicit TLS."""
    cert, context = certificate(tmp_path)
    box = Mailbox()
    starttls = Controller(box, hostname="127.0.0.1", port=free_port(), tls_context=context,
                          require_starttls=True, auth_required=True,
                          authenticator=box.authenticate)
    implicit = Controller(box, hostname="127.0.0.1", port=free_port(), ssl_context=context)
    starttls.start()
    implicit.start()
    box.cert, box.starttls_port, box.implicit_port = cert, starttls.port, implicit.port
    yield box
    starttls.stop()
    implicit.stop()


BATCHED = """
[[handler]]
name = "tell-partner"
on = ["upload.finished"]
path = "/in/*"

[handler.email]
server = "smtp://127.0.0.1:{port}"
ca = "{ca}"
username = "wharf"
password = "file:{secret}"
from = "Wharf <wharf@example.net>"
to = ["ops@example.net", "${{EMAIL}}"]
subject = "Received ${{NAME}} from ${{USER}}"
body = "${{USER}} uploaded ${{PATH}} (SHA-256 ${{SHA256}})"
batch = 6
"""

BATCH = 6


def batched_server(server, smtp, edit=lambda config: config):
    """A server with the batched handler (`edit` changes its configuration) and account acme,
    whose e-mail address is set."""
    secret = server.root / "smtp.secret"
    secret.write_text(SMTP_PASSWORD + "\n")
    server.add_account("acme", password=PASSWORD)
    server.wharf("account", "set", "acme", "--email", "files@acme.example", check=True)
    configure(server, edit(BATCHED.format(port=smtp.starttls_port, ca=smtp.cert, secret=secret)))
    server.start()


def upload_a_burst(server):
    """Five uploads by acme over one SFTP session, started at a batching window's start
    (windows are aligned to the clock), so that the burst falls in one window."""
    outbox = server.root / "outbox"
    outbox.mkdir()
    for i in range(5):
        (outbox / f"r{i}.csv").write_text(f"report {i}\n")
    time.sleep(BATCH - time.time() % BATCH + 0.05)
    server.sftp("acme", "mkdir in\n" + "".join(f"put {outbox}/r{i}.csv in/r{i}.csv\n" for i in range(5)))


def test_a_burst_of_uploads_is_one_message_to_ops_and_the_account(server, smtp):
    batched_server(server, smtp)
    upload_a_burst(server)
    wait_for(lambda: handler_events(server, "email.sent"), timeout=30, what="email.sent")
    time.sleep(3)  # every other job of the window finds itself covered: no second message
    assert len(smtp.messages) == 1, [m["message"]["Subject"] for m in smtp.messages]
    got = smtp.messages[0]
    assert got["rcpt"] == ["files@acme.example", "ops@example.net"]
    assert got["tls"]
    assert got["from"] == "wharf@example.net"
    message = got["message"]
    assert message["Subject"].startswith("Received r") and message["Subject"].endswith("(and 4 more)")
    body = message.get_content()
    for i in range(5):
        assert f"acme uploaded /in/r{i}.csv" in body
    assert smtp.logins and all(ok and tls for _, _, ok, tls in smtp.logins)
    sent = handler_events(server, "email.sent")
    assert len(sent) == 1
    assert sent[0]["attrs"]["events"] == "5"
    assert sent[0]["attrs"]["to"] == "files@acme.example,ops@example.net"
    assert sent[0]["attrs"]["message_id"] == message["Message-ID"]
    assert SMTP_PASSWORD not in server.log.read_text()


def test_a_burst_is_one_message_when_the_first_send_is_refused_for_now(server, smtp):
    """The earliest event's job is told 451 and waits 20 s to retry: the next job of the
    window sends the whole burst at once, and the earliest job, retried, sends nothing."""
    smtp.refuse = 1
    batched_server(server, smtp, lambda c: c.replace('path = "/in/*"\n', 'path = "/in/*"\nretry_wait = 20\n'))
    upload_a_burst(server)
    wait_for(lambda: smtp.messages, timeout=30, what="a message")
    [refused] = smtp.refused
    # Well before the refused job's retry: another job of the window sent it.
    assert smtp.messages[0]["at"] - refused["at"] < 12
    retrying = handler_events(server, "handler.retrying")
    assert len(retrying) == 1 and "451" in retrying[0]["message"]

    def all_done():
        out = server.wharf("handler", "jobs", "--json", check=True).stdout
        jobs = [json.loads(line) for line in out.splitlines()]
        return len(jobs) == 5 and all(j["state"] == "done" for j in jobs)
    wait_for(all_done, timeout=60, what="every job done (the refused one retried)")
    time.sleep(1)
    assert len(smtp.messages) == 1, [m["message"]["Subject"] for m in smtp.messages]
    message = smtp.messages[0]["message"]
    body = message.get_content()
    for i in range(5):
        assert body.count(f"acme uploaded /in/r{i}.csv") == 1, body
    # The same events make the same Message-ID, whichever job sends them.
    assert message["Message-ID"] == refused["message"]["Message-ID"]
    uploads = sorted(e["seq"] for e in handler_events(server, "upload.finished"))
    [sent] = handler_events(server, "email.sent")
    assert sent["attrs"]["events"] == "5"
    listed = []
    for run in sent["attrs"]["seqs"].split(","):
        first, _, last = run.partition("-")
        listed.extend(range(int(first), int(last or first) + 1))
    assert listed == uploads
    assert sent["attrs"]["trigger"] != str(uploads[0]), "sent by another job than the refused one"


QUARANTINE_MAIL = """
[[handler]]
name = "pci"
on = ["upload.finished"]

[handler.content-check]
[[handler.content-check.rule]]
name = "cards"
detect = "card-number"

[[handler]]
name = "tell-security"
on = ["file.quarantined"]

[handler.email]
server = "smtps://127.0.0.1:{port}"
ca = "{ca}"
from = "wharf@example.net"
to = ["security@example.net"]
"""


def test_a_quarantine_is_mailed_over_implicit_tls(server, smtp):
    server.add_account("acme", password=PASSWORD)
    configure(server, QUARANTINE_MAIL.format(port=smtp.implicit_port, ca=smtp.cert))
    server.start()
    card = server.root / "cards.csv"
    card.write_text("name,card\nbob,4111 1111 1111 1111\n")
    r = subprocess.run(["curl", "-sSk", "-u", f"acme:{PASSWORD}", "-T", str(card),
                        f"https://127.0.0.1:{server.https_port}/api/v1/files/cards.csv"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: smtp.messages, timeout=30, what="a message")
    message = smtp.messages[0]["message"]
    assert smtp.messages[0]["rcpt"] == ["security@example.net"]
    assert message["Subject"] == "[Wharf] file.quarantined: /cards.csv"
    body = message.get_content()
    assert "Account: acme" in body and "content rules matched: cards=1" in body
    assert "4111" not in body
    sent = server.wait_event("email.sent")
    assert sent["attrs"]["handler"] == "tell-security"


def test_email_configuration_errors_name_the_line(server):
    configure(server, """
[[handler]]
name = "clear"
on = ["upload.finished"]
[handler.email]
server = "smtp+plain://mail.example.net:25"
from = "wharf@example.net"
to = ["ops@example.net"]

[[handler]]
name = "literal"
on = ["upload.finished"]
[handler.email]
server = "smtps://mail.example.net"
username = "wharf"
password = "hunter2"
from = "wharf@example.net"
to = ["${NOPE}"]
""")
    result = server.wharf("check-config")
    assert result.returncode != 0
    err = result.stderr
    assert "handler[0].email.server" in err and "this machine" in err
    assert "handler[1].email.password" in err and "env:NAME or file:PATH" in err
