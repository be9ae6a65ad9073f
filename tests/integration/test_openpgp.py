"""OpenPGP handlers against GnuPG (Debian's gnupg): a partner's GnuPG-encrypted and signed
upload is decrypted into /incoming, a plain one is encrypted and signed for the partner,
whose GnuPG then decrypts and verifies it; a damaged message fails cleanly."""

import os
import shutil
import subprocess
import time

import pytest

from test_handlers import configure, handler_events, names, wait_for

PASSWORD = "openpgp-test-password-1"
WHARF_PASSPHRASE = "wharf key pass phrase 1"


class GnuPG:
    """A GnuPG home of this test (a short path: gpg-agent's socket lives there)."""

    def __init__(self, name):
        self.home = f"/tmp/wharf-gpg-{os.getpid()}-{time.time_ns()}-{name}"
        os.makedirs(self.home, mode=0o700)

    def run(self, *args, input=None, check=True):
        return subprocess.run(["gpg", "--homedir", self.home, "--batch", "--yes",
                               "--pinentry-mode", "loopback", *args],
                              input=input, capture_output=True, timeout=120, check=check)

    def make_key(self, uid, passphrase=""):
        self.run("--passphrase", passphrase, "--quick-gen-key", uid, "future-default", "default", "never")
        return uid

    def export(self, uid, path):
        path.write_bytes(self.run("--armor", "--export", uid).stdout)
        return path

    def export_secret(self, uid, passphrase, path):
        path.write_bytes(self.run("--armor", "--passphrase", passphrase,
                                  "--export-secret-keys", uid).stdout)
        return path

    def import_key(self, path):
        self.run("--import", str(path))

    def close(self):
        subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "all"], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def gnupg():
    made = []

    def new(name):
        g = GnuPG(name)
        made.append(g)
        return g
    yield new
    for g in made:
        g.close()


HANDLERS = """
[[handler]]
name = "open-incoming"
on = ["upload.finished"]
path = "/upload/*.gpg"

[handler.openpgp]
operation = "decrypt"
key = "{wharf_secret}"
passphrase = "file:{passphrase}"
signers = ["{partner_public}"]
output = "${{HOME}}/incoming/"
source = "remove"

[[handler]]
name = "seal-outgoing"
on = ["upload.finished"]
path = "/outgoing/*.csv"

[handler.openpgp]
operation = "encrypt"
recipients = ["{partner_public}"]
sign = true
key = "{wharf_secret}"
passphrase = "file:{passphrase}"
source = "remove"
"""


def test_gnupg_messages_are_opened_and_wharf_messages_open_in_gnupg(server, gnupg):
    partner, wharf = gnupg("partner"), gnupg("wharf")
    partner.make_key("Partner <partner@example.net>")
    wharf.make_key("Wharf <wharf@example.net>", WHARF_PASSPHRASE)
    root = server.root
    partner_public = partner.export("partner@example.net", root / "partner.asc")
    wharf_public = wharf.export("wharf@example.net", root / "wharf.asc")
    wharf_secret = wharf.export_secret("wharf@example.net", WHARF_PASSPHRASE, root / "wharf-secret.asc")
    (root / "passphrase").write_text(WHARF_PASSPHRASE + "\n")
    partner.import_key(wharf_public)
    home = server.add_account("acme", password=PASSWORD)
    configure(server, HANDLERS.format(wharf_secret=wharf_secret, passphrase=root / "passphrase",
                                      partner_public=partner_public))
    server.start()

    outbox = root / "outbox"
    outbox.mkdir()
    invoice = b"id,amount\n" + b"".join(b"%d,%d\n" % (i, i * 7) for i in range(20000))
    (outbox / "invoice.csv").write_bytes(invoice)
    # The partner encrypts to Wharf and signs (GnuPG compresses by default).
    partner.run("--trust-model", "always", "--recipient", "wharf@example.net", "--sign",
                "--output", str(outbox / "invoice.csv.gpg"), "--encrypt", str(outbox / "invoice.csv"))
    # Not signed by the partner: refused even though it decrypts.
    (outbox / "unsigned.txt").write_bytes(b"who sent this?\n")
    partner.run("--trust-model", "always", "--recipient", "wharf@example.net",
                "--output", str(outbox / "unsigned.txt.gpg"), "--encrypt", str(outbox / "unsigned.txt"))
    # Damaged: the right start, then garbage.
    good = (outbox / "invoice.csv.gpg").read_bytes()
    (outbox / "broken.csv.gpg").write_bytes(good[:200] + os.urandom(4000))
    (outbox / "report.csv").write_bytes(b"quarter,total\nQ3,1234\n")

    server.sftp("acme", "mkdir upload\nmkdir incoming\nmkdir outgoing\n"
                f"put {outbox}/invoice.csv.gpg upload/\nput {outbox}/unsigned.txt.gpg upload/\n"
                f"put {outbox}/broken.csv.gpg upload/\nput {outbox}/report.csv outgoing/\n")
    wait_for(lambda: handler_events(server, "openpgp.decrypted")
             and len(handler_events(server, "openpgp.failed")) >= 2
             and handler_events(server, "openpgp.encrypted"), timeout=60, what="openpgp events")

    # Decrypted into /incoming, the signer named, the message removed.
    assert (home / "incoming" / "invoice.csv").read_bytes() == invoice
    decrypted = handler_events(server, "openpgp.decrypted")
    assert len(decrypted) == 1
    fingerprint = partner.run("--with-colons", "--fingerprint", "partner@example.net").stdout.decode()
    assert decrypted[0]["attrs"]["signer"] in fingerprint
    failed = {e["path"]: e for e in handler_events(server, "openpgp.failed")}
    assert set(failed) == {"/upload/unsigned.txt.gpg", "/upload/broken.csv.gpg"}
    assert "no trusted signer" in failed["/upload/unsigned.txt.gpg"]["message"]
    # The library's errors can print the bytes they failed on: none reach the trail.
    assert len(failed["/upload/broken.csv.gpg"]["message"]) < 300, failed["/upload/broken.csv.gpg"]
    assert names(home / "upload") == []
    assert names(home / "incoming") == ["invoice.csv"]
    quarantine = root / "wharf-data" / "quarantine"
    assert len([n for n in names(quarantine) if not n.endswith(".json")]) == 2

    # Sealed for the partner: the partner's GnuPG decrypts it and verifies Wharf's signature.
    assert names(home / "outgoing") == ["report.csv.pgp"]
    server.sftp("acme", f"get outgoing/report.csv.pgp {root / 'got.pgp'}\n")
    opened = partner.run("--trust-model", "always", "--status-fd", "2", "--decrypt", str(root / "got.pgp"))
    assert opened.stdout == b"quarter,total\nQ3,1234\n"
    assert b"GOODSIG" in opened.stderr and b"Wharf <wharf@example.net>" in opened.stderr
    assert WHARF_PASSPHRASE not in server.log.read_text()
