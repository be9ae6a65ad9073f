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

    def fingerprint(self, uid):
        out = self.run("--with-colons", "--fingerprint", uid).stdout.decode()
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

    def subkeys(self, uid):
        """The subkeys' fingerprints, in the certificate's order."""
        out = self.run("--with-colons", "--list-keys", uid).stdout.decode().splitlines()
        return [out[i + 1].split(":")[9] for i, line in enumerate(out) if line.startswith("sub:")]

    def keygrip(self, uid, subkey):
        out = self.run("--with-colons", "--with-keygrip", "--list-keys", uid).stdout.decode().splitlines()
        at = next(i for i, line in enumerate(out) if line.startswith("fpr:") and line.split(":")[9] == subkey)
        return out[at + 1].split(":")[9]

    def add_subkey(self, uid, algo, usage):
        """Adds a subkey; answers its fingerprint."""
        self.run("--passphrase", "", "--quick-add-key", self.fingerprint(uid), algo, usage)
        return self.subkeys(uid)[-1]

    def add_existing_subkey(self, uid, keygrip):
        """Adds the key material `keygrip` (another key's subkey) as a subkey of `uid`,
        with every capability its algorithm has; answers its fingerprint."""
        self.run("--expert", "--passphrase", "", "--command-fd", "0", "--edit-key", self.fingerprint(uid),
                 input=f"addkey\n13\n{keygrip}\nQ\n0\nsave\n".encode())
        return self.subkeys(uid)[-1]

    def revoke_subkey(self, uid, subkey):
        index = self.subkeys(uid).index(subkey) + 1
        self.run("--passphrase", "", "--command-fd", "0", "--edit-key", self.fingerprint(uid),
                 input=f"key {index}\nrevkey\ny\n0\n\ny\nsave\n".encode())

    def expire_subkey_soon(self, uid, subkey):
        """Sets the subkey to expire in two seconds, and waits for it to."""
        self.run("--passphrase", "", "--quick-set-expire", self.fingerprint(uid), "seconds=2", subkey)
        time.sleep(3)

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


ROTATED = """
[[handler]]
name = "seal-for-partner"
on = ["upload.finished"]
path = "/outgoing/*.csv"

[handler.openpgp]
operation = "encrypt"
recipients = ["{partner_public}"]

[[handler]]
name = "check-signed"
on = ["upload.finished"]
path = "/signed/*.gpg"

[handler.openpgp]
operation = "verify"
signers = ["{signer_public}"]
output = "${{HOME}}/verified/"
"""


def test_only_keys_a_certificate_allows_now_encrypt_or_sign(server, gnupg):
    """A partner who rotated keys: an RSA signing subkey first, then a revoked and an
    expired encryption subkey, then the one in use. Only that one is encrypted to. A
    signer's signatures count by its primary key and its signing subkey, not by a revoked
    signing subkey nor by its RSA encryption subkey's key material."""
    partner, signer = gnupg("rotated"), gnupg("signer")
    uid = "partner@example.net"
    partner.run("--passphrase", "", "--quick-gen-key", f"Partner <{uid}>", "ed25519", "sign", "never")
    rsa_signing = partner.add_subkey(uid, "rsa2048", "sign")
    revoked = partner.add_subkey(uid, "cv25519", "encr")
    partner.revoke_subkey(uid, revoked)
    expired = partner.add_subkey(uid, "cv25519", "encr")
    partner.expire_subkey_soon(uid, expired)
    current = partner.add_subkey(uid, "cv25519", "encr")

    suid = "signer@example.net"
    signer.run("--passphrase", "", "--quick-gen-key", f"Signer <{suid}>", "ed25519", "sign", "never")
    rsa_encryption = signer.add_subkey(suid, "rsa2048", "encr")
    signing = signer.add_subkey(suid, "ed25519", "sign")
    withdrawn = signer.add_subkey(suid, "ed25519", "sign")
    # The encryption subkey's key material, given the sign capability in another key of
    # the same home: its signatures verify with the signer's encryption subkey.
    signer.run("--passphrase", "", "--quick-gen-key", "Other <other@example.net>", "ed25519", "sign", "never")
    borrowed = signer.add_existing_subkey("other@example.net", signer.keygrip(suid, rsa_encryption))

    root = server.root
    outbox = root / "outbox"
    outbox.mkdir()
    for name, key in [("by-primary", signer.fingerprint(suid)), ("by-subkey", signing),
                      ("by-withdrawn", withdrawn), ("by-encryption-key", borrowed)]:
        (outbox / f"{name}.txt").write_bytes(f"signed {name}\n".encode())
        signer.run("--passphrase", "", "--local-user", f"{key}!", "--output", str(outbox / f"{name}.txt.gpg"),
                   "--sign", str(outbox / f"{name}.txt"))
    signer.revoke_subkey(suid, withdrawn)
    partner_public = partner.export(uid, root / "partner.asc")
    signer_public = signer.export(suid, root / "signer.asc")
    home = server.add_account("acme", password=PASSWORD)
    configure(server, ROTATED.format(partner_public=partner_public, signer_public=signer_public))
    server.start()
    (outbox / "report.csv").write_bytes(b"quarter,total\nQ4,4321\n")
    server.sftp("acme", "mkdir outgoing\nmkdir signed\nmkdir verified\n"
                f"put {outbox}/report.csv outgoing/\n"
                + "".join(f"put {outbox}/{n}.txt.gpg signed/\n"
                          for n in ["by-primary", "by-subkey", "by-withdrawn", "by-encryption-key"]))
    wait_for(lambda: handler_events(server, "openpgp.encrypted")
             and len(handler_events(server, "openpgp.verified")) + len(handler_events(server, "openpgp.failed")) >= 4,
             timeout=60, what="openpgp events")

    # Encrypted to the current subkey alone.
    sealed = home / "outgoing" / "report.csv.pgp"
    packets = partner.run("--list-packets", str(sealed), check=False).stdout.decode()
    to = {line.split("keyid ")[1].split()[0] for line in packets.splitlines() if "pubkey enc packet" in line}
    assert to == {current[-16:]}, (packets, current)
    # Without the other subkeys' secrets, the partner's GnuPG opens it.
    for old in (rsa_signing, revoked, expired):
        partner.run("--delete-secret-keys", f"{old}!")
    opened = partner.run("--trust-model", "always", "--decrypt", str(sealed))
    assert opened.stdout == b"quarter,total\nQ4,4321\n"

    verified = {e["path"] for e in handler_events(server, "openpgp.verified")}
    assert verified == {"/signed/by-primary.txt.gpg", "/signed/by-subkey.txt.gpg"}
    assert names(home / "verified") == ["by-primary.txt", "by-subkey.txt"]
    failed = {e["path"]: e["message"] for e in handler_events(server, "openpgp.failed")}
    assert set(failed) == {"/signed/by-withdrawn.txt.gpg", "/signed/by-encryption-key.txt.gpg"}
    assert all("no trusted signer" in m for m in failed.values()), failed


def test_a_recipient_with_nothing_to_encrypt_to_is_refused_at_load(server, gnupg):
    partner = gnupg("retired")
    uid = "retired@example.net"
    partner.run("--passphrase", "", "--quick-gen-key", f"Retired <{uid}>", "ed25519", "sign", "never")
    partner.add_subkey(uid, "rsa2048", "sign")
    partner.revoke_subkey(uid, partner.add_subkey(uid, "cv25519", "encr"))
    partner.export(uid, server.root / "retired.asc")
    configure(server, """
[[handler]]
name = "seal"
on = ["upload.finished"]
[handler.openpgp]
operation = "encrypt"
recipients = ["retired.asc"]
""")
    result = server.wharf("check-config")
    assert result.returncode != 0
    assert "handler[0].openpgp.recipients" in result.stderr
    assert "retired.asc: cannot be encrypted to" in result.stderr, result.stderr
