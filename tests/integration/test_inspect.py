"""Handlers that look inside files, with real clients: content checks (card numbers, IBANs,
dictionaries, office documents, PDF, ZIP bombs) over SFTP and HTTPS, and antivirus scanning by
ClamAV's own daemon, started here with a signature database the test writes."""

import json
import os
import shutil
import subprocess
import time
import zipfile

import pytest

from test_handlers import configure, handler_events, names, wait_for

PASSWORD = "inspect-test-password-1"

CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009"]
# The same shapes with a wrong check digit: Luhn-invalid lookalikes.
LOOKALIKES = ["4111 1111 1111 1112", "5500-0000-0000-0005", "340000000000008"]

CONTENT = """
[[handler]]
name = "pci"
on = ["upload.finished"]
path = "/upload/**"

[handler.content-check]

[[handler.content-check.rule]]
name = "cards"
detect = "card-number"

[[handler.content-check.rule]]
name = "ibans"
detect = "iban"
action = "tag"

[[handler.content-check.rule]]
name = "codenames"
words = "{dictionary}"
min_matches = 2
action = "tag"

[[handler.content-check.rule]]
name = "payroll"
regex = "(?i)salary\\\\s+slip"
action = "deny"

[[handler]]
name = "onwards"
on = ["content.passed"]

[handler.dispatch]
[[handler.dispatch.rule]]
to = "{out}/${{USER}}/${{NAME}}"
"""


def docx_with(text_runs):
    """A minimal DOCX (a ZIP of XML parts) whose one paragraph is made of these runs."""
    runs = "".join(f"<w:r><w:rPr><w:b/></w:rPr><w:t xml:space=\"preserve\">{t}</w:t></w:r>"
                   for t in text_runs)
    return {
        "[Content_Types].xml": '<?xml version="1.0"?><Types/>',
        "word/document.xml": '<?xml version="1.0" encoding="UTF-8"?><w:document '
                             'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
                             f"<w:body><w:p>{runs}</w:p></w:body></w:document>",
    }


def pdf_with(line):
    """A minimal PDF document (one page, Helvetica) showing one line of text."""
    stream = f"BT /F1 12 Tf 72 720 Td ({line}) Tj ET".encode()
    return pdf_of([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ])


def pdf_drawing_itself():
    """A hostile PDF document of a few hundred bytes: its page draws a form that draws
    itself, so a reader without a depth limit recurses until its stack overflows."""
    draw = b"/X1 Do"
    return pdf_of([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R "
        b"/Resources << /XObject << /X1 4 0 R >> >> >>",
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources << /XObject << /X1 4 0 R >> >> "
        b"/Length %d >>\nstream\n" % len(draw) + draw + b"\nendstream",
        b"<< /Length %d >>\nstream\n" % len(draw) + draw + b"\nendstream",
    ])


def pdf_of(objects):
    """A PDF document of these objects (numbered from 1, the first the catalog)."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def write_zip(path, entries, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def outbox_files(root):
    outbox = root / "outbox"
    outbox.mkdir()
    files = {
        "cards.csv": "id,card\n" + "".join(f"{i},{c}\n" for i, c in enumerate(CARDS)),
        "lookalikes.csv": "id,card\n" + "".join(f"{i},{c}\n" for i, c in enumerate(LOOKALIKES)),
        "iban.txt": "Please pay to GB82 WEST 1234 5698 7654 32 by Friday.\n",
        "once.txt": "Project Falcon is on track.\n",
        "twice.txt": "Project Falcon is on track; project FALCON ships in May.\n",
        "slip.txt": "Your Salary  Slip for November\n",
    }
    for name, text in files.items():
        (outbox / name).write_text(text)
    write_zip(outbox / "report.docx", docx_with(["Card: 4111 1111 ", "1111 1111 thanks"]))
    write_zip(outbox / "clean.docx", docx_with(["Nothing ", "to see"]))
    (outbox / "statement.pdf").write_bytes(pdf_with("Card on file: 5500 0000 0000 0004"))
    (outbox / "brochure.pdf").write_bytes(pdf_with("Nothing to declare"))
    (outbox / "loop.pdf").write_bytes(pdf_drawing_itself())
    # Card rows with a small ZIP archive appended: a CSV reader still reads every row.
    with open(outbox / "appended.csv", "wb") as f:
        f.write(("id,card\n" + "".join(f"{i},4111 1111 1111 1111\n" for i in range(20))).encode())
        write_zip(outbox / "tail.zip", {"readme.txt": "hello"})
        f.write((outbox / "tail.zip").read_bytes())
    (outbox / "tail.zip").unlink()
    # A card number in an attribute of plain XML.
    (outbox / "customers.xml").write_text('<?xml version="1.0"?><rows><row pan="5500 0000 0000 0004"/></rows>')
    # 200 MiB of zeros in a few hundred KiB: far past the default 100:1 ratio.
    with zipfile.ZipFile(outbox / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("zeros.csv", "w", force_zip64=True) as entry:
            block = bytes(1 << 20)
            for _ in range(200):
                entry.write(block)
    return outbox


@pytest.mark.parametrize("protocol", ["sftp", "https"])
def test_content_rules_tag_quarantine_and_deny_without_naming_the_data(server, protocol):
    home = server.add_account("acme", password=PASSWORD)
    dictionary = server.root / "codenames.txt"
    dictionary.write_text("# project code names\nProject Falcon\nBluebird\n")
    out = server.root / "out"
    configure(server, CONTENT.format(dictionary=dictionary, out=out))
    server.start()
    outbox = outbox_files(server.root)
    uploads = sorted(p.name for p in outbox.iterdir())
    assert (outbox / "bomb.zip").stat().st_size < 1 << 20
    if protocol == "sftp":
        server.sftp("acme", "mkdir upload\n" + "".join(f"put {outbox / n} upload/{n}\n" for n in uploads))
    else:
        (home / "upload").mkdir(parents=True)
        base = f"https://127.0.0.1:{server.https_port}/api/v1/files/upload"
        for n in uploads:
            r = subprocess.run(["curl", "-sSk", "-u", f"acme:{PASSWORD}", "-o", "/dev/null",
                                "-w", "%{http_code}", "-T", str(outbox / n), f"{base}/{n}"],
                               capture_output=True, text=True, timeout=60)
            assert r.stdout in ("200", "201", "204"), (n, r.stdout, r.stderr)

    def settled():
        done = (handler_events(server, "content.passed") + handler_events(server, "content.unscannable")
                + [e for e in handler_events(server, "content.matched") if e["attrs"]["outcome"] != "tag"])
        return len(done) >= len(uploads)
    wait_for(settled, timeout=60, what="every upload checked")
    wait_for(lambda: len(handler_events(server, "file.dispatched")) >= 6, what="dispatches")

    matched = {e["path"]: e for e in handler_events(server, "content.matched")}
    assert matched["/upload/cards.csv"]["attrs"]["matches"] == "cards=3"
    assert matched["/upload/cards.csv"]["attrs"]["outcome"] == "quarantine"
    assert matched["/upload/report.docx"]["attrs"]["matches"] == "cards=1"
    assert matched["/upload/statement.pdf"]["attrs"]["matches"] == "cards=1"
    assert matched["/upload/appended.csv"]["attrs"]["matches"] == "cards=20"
    assert matched["/upload/customers.xml"]["attrs"]["matches"] == "cards=1"
    assert matched["/upload/iban.txt"]["attrs"]["outcome"] == "tag"
    assert matched["/upload/twice.txt"]["attrs"]["matches"] == "codenames=2"
    assert matched["/upload/slip.txt"]["attrs"]["outcome"] == "deny"
    assert set(matched) == {"/upload/cards.csv", "/upload/report.docx", "/upload/iban.txt",
                            "/upload/twice.txt", "/upload/slip.txt", "/upload/statement.pdf",
                            "/upload/appended.csv", "/upload/customers.xml"}
    for e in matched.values():
        assert e["account"] == "acme" and e["protocol"] == protocol

    # Passed files went on; tagged ones carry their tags on the file itself.
    assert names(out / "acme") == ["brochure.pdf", "clean.docx", "iban.txt", "lookalikes.csv", "once.txt",
                                   "twice.txt"]
    assert os.getxattr(out / "acme" / "iban.txt", "user.wharf.tags") == b"ibans"
    assert os.getxattr(out / "acme" / "twice.txt", "user.wharf.tags") == b"codenames"
    with pytest.raises(OSError):
        os.getxattr(out / "acme" / "lookalikes.csv", "user.wharf.tags")

    # The bomb was stopped by the limits, with an event, and quarantined.
    bomb = handler_events(server, "content.unscannable", "/upload/bomb.zip")
    assert len(bomb) == 1 and "compression bomb" in bomb[0]["message"], bomb
    # The PDF document that draws itself ended its reader's process, not the server's.
    loop = handler_events(server, "content.unscannable", "/upload/loop.pdf")
    assert len(loop) == 1 and "PDF document cannot be read" in loop[0]["message"], loop
    assert server.proc.poll() is None
    quarantine = server.root / "wharf-data" / "quarantine"
    held = [n for n in names(quarantine) if not n.endswith(".json")]
    assert sorted(n.split("-", 5)[-1] for n in held) == ["appended.csv", "bomb.zip", "cards.csv",
                                                         "customers.xml", "loop.pdf", "report.docx",
                                                         "statement.pdf"]
    removed = handler_events(server, "file.removed")
    assert [e["path"] for e in removed] == ["/upload/slip.txt"]
    assert names(home / "upload") == []

    # No event, log line or sidecar holds a card number or the IBAN.
    trail = server.wharf("events", "--json", "--limit", "100000", check=True).stdout
    sidecars = "".join((quarantine / n).read_text() for n in names(quarantine) if n.endswith(".json"))
    for text in [trail, sidecars, server.log.read_text()]:
        digits = text.replace(" ", "").replace("-", "")
        for card in CARDS:
            assert card.replace(" ", "").replace("-", "") not in digits
        assert "WEST12345698" not in digits


def test_content_check_configuration_errors_name_the_line(server):
    configure(server, """
[[handler]]
name = "dlp"
on = ["upload.finished"]

[handler.content-check]
[[handler.content-check.rule]]
name = "bad"
regex = "([unclosed"

[[handler]]
name = "dlp2"
on = ["upload.finished"]

[handler.content-check]
[[handler.content-check.rule]]
name = "ssn"
detect = "us-ssn"

[[handler]]
name = "av"
on = ["upload.finished"]

[handler.antivirus]
clamd = "localhost:3310"
""")
    result = server.wharf("check-config")
    assert result.returncode != 0
    err = result.stderr
    assert "handler[0].content-check.rule[0].regex" in err and "unclosed" in err
    assert "handler[1].content-check.rule[0].detect" in err and '"card-number"' in err
    assert "handler[2].antivirus.clamd" in err and "tcp:HOST:PORT" in err
    text = (server.root / "wharf.toml").read_text().splitlines()
    line = next(i for i, l in enumerate(text, 1) if "us-ssn" in l)
    assert f"wharf.toml:{line}: handler[1].content-check.rule[0].detect" in err


EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class Clamd:
    """ClamAV's daemon on a unix socket of this test, with one signature the test wrote
    (EICAR's test string); no database is downloaded."""

    def __init__(self, root, limits=""):
        self.dir = root / "clamd"
        (self.dir / "db").mkdir(parents=True)
        # A unix socket's path must stay short: keep it under /tmp.
        self.socket = f"/tmp/wharf-clamd-{os.getpid()}-{time.time_ns()}.sock"
        sig = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE".hex()
        (self.dir / "db" / "wharf-test.ndb").write_text(f"Wharf.Test.EICAR:0:*:{sig}\n")
        (self.dir / "clamd.conf").write_text(
            f"LocalSocket {self.socket}\nDatabaseDirectory {self.dir / 'db'}\nForeground yes\n"
            f"LogFile {self.dir / 'clamd.log'}\nTemporaryDirectory {self.dir}\n{limits}")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([shutil.which("clamd") or "/usr/sbin/clamd", "-c",
                                      str(self.dir / "clamd.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(self.socket), timeout=60, what="clamd's socket")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        if os.path.exists(self.socket):
            os.unlink(self.socket)


@pytest.fixture
def clamd(tmp_path):
    c = Clamd(tmp_path)
    yield c
    c.stop()


ANTIVIRUS = """
[[handler]]
name = "scan"
on = ["upload.finished"]
attempts = 30
retry_wait = 1

[handler.antivirus]
clamd = "unix:{socket}"

[[handler]]
name = "deliver"
on = ["antivirus.clean"]

[handler.dispatch]
[[handler.dispatch.rule]]
to = "{out}/${{NAME}}"
"""


def test_eicar_is_quarantined_and_nothing_is_dispatched_while_clamd_is_down(server, clamd):
    home = server.add_account("acme", password=PASSWORD)
    out = server.root / "out"
    configure(server, ANTIVIRUS.format(socket=clamd.socket, out=out))
    server.start()
    outbox = server.root / "outbox"
    outbox.mkdir()
    (outbox / "eicar.com").write_bytes(EICAR)
    (outbox / "invoice.csv").write_bytes(b"id,amount\n1,100\n")
    # clamd is not running yet: both uploads wait, retried, never dispatched.
    server.sftp("acme", f"put {outbox / 'eicar.com'}\nput {outbox / 'invoice.csv'}\n")
    wait_for(lambda: len(handler_events(server, "handler.retrying")) >= 4, what="retries")
    retrying = handler_events(server, "handler.retrying")
    assert all("cannot be reached" in e["message"] for e in retrying), retrying
    assert names(home) == ["eicar.com", "invoice.csv"]
    assert names(out) == []
    assert not handler_events(server, "antivirus.clean")

    clamd.start()
    wait_for(lambda: handler_events(server, "file.dispatched"), timeout=60, what="dispatch")
    wait_for(lambda: handler_events(server, "antivirus.infected"), timeout=30, what="infected")
    infected = handler_events(server, "antivirus.infected")
    assert len(infected) == 1
    assert infected[0]["path"] == "/eicar.com"
    assert infected[0]["attrs"]["signature"] == "Wharf.Test.EICAR.UNOFFICIAL"
    assert infected[0]["outcome"] == "failure"
    clean = handler_events(server, "antivirus.clean")
    assert [e["path"] for e in clean] == ["/invoice.csv"]
    assert names(out) == ["invoice.csv"]
    assert names(home) == []
    quarantine = server.root / "wharf-data" / "quarantine"
    held = [n for n in names(quarantine) if not n.endswith(".json")]
    assert len(held) == 1 and held[0].endswith("-eicar.com")
    assert (quarantine / held[0]).read_bytes() == EICAR
    sidecar = json.loads((quarantine / (held[0] + ".json")).read_text())
    assert sidecar["reason"] == "infected: Wharf.Test.EICAR.UNOFFICIAL"


def test_a_file_clamd_refuses_is_quarantined_even_when_unscanned_files_may_pass(server, tmp_path):
    """A file padded past clamd's StreamMaxLength must not skip the scan."""
    small = Clamd(tmp_path, limits="StreamMaxLength 1M\n")
    small.start()
    try:
        server.add_account("acme", password=PASSWORD)
        out = server.root / "out"
        configure(server, ANTIVIRUS.format(socket=small.socket, out=out).replace(
            'clamd = "unix:', 'unreachable = "pass"\nclamd = "unix:').replace(
            'on = ["antivirus.clean"]', 'on = ["antivirus.clean", "antivirus.unscanned"]'))
        server.start()
        outbox = server.root / "outbox"
        outbox.mkdir()
        (outbox / "padded.bin").write_bytes(EICAR + bytes(2 << 20))
        (outbox / "small.csv").write_bytes(b"id,amount\n1,100\n")
        server.sftp("acme", f"put {outbox / 'padded.bin'}\nput {outbox / 'small.csv'}\n")
        wait_for(lambda: handler_events(server, "antivirus.refused"), timeout=60, what="refused")
        wait_for(lambda: handler_events(server, "file.dispatched"), timeout=60, what="dispatch")
        refused = handler_events(server, "antivirus.refused")
        assert [e["path"] for e in refused] == ["/padded.bin"]
        assert "size limit" in refused[0]["message"], refused
        assert not handler_events(server, "antivirus.unscanned")
        assert names(out) == ["small.csv"]
        quarantine = server.root / "wharf-data" / "quarantine"
        assert [n for n in names(quarantine) if n.endswith("-padded.bin")]
    finally:
        small.stop()
