"""Event handlers under attack by the account they work for, with real clients.

- A folder swapped for a link (to a folder outside the home) while a signature check waits
  for its `.sig`: nothing outside the home is moved, deleted or created.
- A file renamed over a signed upload while its signature is checked: only the verified
  file may arrive at the destination.
- Three quick uploads of one name into a uuid-prefix folder stay three files, each record
  true to its file's bytes; a dispatch whose file was replaced leaves the replacement alone.
"""

import hashlib
import os
import subprocess
import time

from test_handlers import configure, handler_events, make_key, names, sign, wait_for

PASSWORD = "security-handlers-password-1"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign_digest(private, digest, out):
    """A detached RSASSA-PSS signature over a SHA-256 `digest` file (as `sign` makes)."""
    subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", str(private), "-in", str(digest),
                    "-out", str(out), "-pkeyopt", "digest:sha256",
                    "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest"],
                   check=True)
    return out


def snapshot(folder):
    """Every name under `folder` with its bytes (links as their targets)."""
    seen = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                seen[rel] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    seen[rel] = ("file", f.read())
            else:
                seen[rel] = ("folder", None)
    return seen


def link_out_of_home(server, sftp, link, outside):
    """Makes `link` (a client path at the top of the home) lead to the host folder
    `outside`. A client could once do it alone: a link made three folders deep to
    `/<name>` was stored as `../../../<name>`, and renamed to the top of the home led three
    folders above it. The server now stores links so that they stay in the home; then the
    link is made on the server's side, as another program (or an older server) could have
    left it. The attack that follows (the client swapping it in for a folder) is the same
    either way."""
    home = server.homes / "acme"
    assert outside.parent == home.parent.parent.parent, "the home must be three levels down"
    for folder in ("/deep", "/deep/er", "/deep/er/est"):
        try:
            sftp.mkdir(folder)
        except OSError:
            pass
    deep = "/deep/er/est/" + os.path.basename(link)
    sftp.symlink("/" + outside.name, deep)
    try:
        sftp.posix_rename(deep, link)
    except OSError:
        link = deep
    on_disk = home / link.lstrip("/")
    if os.path.realpath(on_disk) != str(outside):
        sftp.remove(link)
        on_disk = home / os.path.basename(link)
        os.symlink(outside, on_disk)
    assert os.path.realpath(on_disk) == str(outside)


def swap_for_link(sftp, folder, parked):
    """Renames `folder` away and the prepared link `parked` into its place, back to back."""
    sftp.posix_rename(folder, folder + "-away")
    sftp.posix_rename(parked, folder)


SIGNATURE_HANDLER = """
[[handler]]
name = "signatures"
on = ["upload.finished"]
path = "{path}"

[handler.verify-signature]
keys = ["{public}"]
wait = {wait}
move_to = "${{HOME}}/{move_to}/${{NAME}}"
"""


def test_a_folder_swapped_for_a_link_while_a_signature_is_awaited(server):
    private, public = make_key(server.root)
    home = server.add_account("acme", password=PASSWORD)
    configure(server, SIGNATURE_HANDLER.format(path="/upload/*", public=public, wait=6,
                                               move_to="incoming"))
    configure(server, SIGNATURE_HANDLER.replace('"signatures"', '"late-signatures"').format(
        path="/in2/*", public=public, wait=30, move_to="incoming"))
    # Outside the home: a folder holding canaries named like the uploads.
    outside = server.root / "outside"
    outside.mkdir()
    (outside / "a.csv").write_bytes(b"canary a")
    (outside / "keep.txt").write_bytes(b"canary")
    before = snapshot(outside)
    local = server.root / "out"
    local.mkdir()
    (local / "a.csv").write_bytes(b"id,amount\n1,100\n")
    (local / "b.csv").write_bytes(b"id,amount\n2,200\n")
    sign(private, local / "b.csv", local / "b.csv.sig")
    server.start()

    client = server.paramiko("acme")
    sftp = client.open_sftp()
    for folder in ("/upload", "/in2", "/incoming"):
        sftp.mkdir(folder)
    link_out_of_home(server, sftp, "/parked1", outside)
    link_out_of_home(server, sftp, "/parked2", outside)
    # a.csv waits 6 s for a signature that never comes; meanwhile its folder becomes a
    # link out of the home.
    sftp.put(str(local / "a.csv"), "/upload/a.csv")
    time.sleep(1.5)
    swap_for_link(sftp, "/upload", "/parked1")
    # b.csv waits for its signature; meanwhile its destination folder becomes a link out.
    sftp.put(str(local / "b.csv"), "/in2/b.csv")
    time.sleep(1.5)
    swap_for_link(sftp, "/incoming", "/parked2")
    sftp.put(str(local / "b.csv.sig"), "/in2/b.csv.sig")
    sftp.close()
    client.close()

    def outcome(path):
        return [e for e in server.events() if e["name"] in ("handler.refused", "handler.failed")
                and e.get("path") == path]
    wait_for(lambda: outcome("/upload/a.csv") and outcome("/in2/b.csv"), timeout=30,
             what="both outcomes")
    [a], [b] = outcome("/upload/a.csv"), outcome("/in2/b.csv")
    assert a["attrs"]["handler"] == "signatures"
    if a["name"] == "handler.failed":
        # The job looked in the instant between the two renames, found no file and did
        # nothing. Rare; the link was not followed either way.
        assert "is gone" in a["message"], a
    else:
        assert "symbolic link" in a["message"], a
    assert b["name"] == "handler.refused", b
    assert b["attrs"]["handler"] == "late-signatures"
    assert "symbolic link" in b["message"] and str(home / "incoming") in b["message"], b
    for event in (a, b):
        assert event["outcome"] == "failure" and event["account"] == "acme"
    # Nothing outside the home was moved, deleted or created; the uploads stayed home.
    time.sleep(1)
    assert snapshot(outside) == before
    assert (home / "upload-away" / "a.csv").read_bytes() == b"id,amount\n1,100\n"
    assert (home / "in2" / "b.csv").read_bytes() == b"id,amount\n2,200\n"
    assert names(home / "incoming-away") == []
    assert not handler_events(server, "signature.valid")
    assert not handler_events(server, "file.quarantined")
    quarantine = server.root / "wharf-data" / "quarantine"
    assert names(quarantine) == []


def copy_data(sftp, source, dest, length, at):
    """SFTP copy-data: the server copies `length` bytes of handle `source` into `dest`."""
    from paramiko.sftp import CMD_EXTENDED, int64
    sftp._request(CMD_EXTENDED, "copy-data", source.handle, int64(0), int64(length),
                  dest.handle, int64(at))


def test_a_file_renamed_over_a_signed_upload_is_never_delivered(server):
    """The signed file is large (1 GiB, assembled on the server with copy-data, so cheap to
    send), so checking its signature takes a while; half a second after the upload is
    answered, an unsigned file is renamed over it. Whenever the rename lands (before the
    check, during it, or after the move), only the signed bytes may reach `valid/`, under
    a record that is true to them."""
    private, public = make_key(server.root)
    home = server.add_account("acme", password=PASSWORD)
    configure(server, SIGNATURE_HANDLER.format(path="/upload/*", public=public, wait=60,
                                               move_to="valid"))
    chunk = os.urandom(16 << 20)
    copies = 64
    size = len(chunk) * copies
    whole = hashlib.sha256()
    for _ in range(copies):
        whole.update(chunk)
    signed_sha = whole.hexdigest()
    (server.root / "big.sha256").write_bytes(whole.digest())
    (server.root / "chunk.bin").write_bytes(chunk)
    sign_digest(private, server.root / "big.sha256", server.root / "big.bin.sig")
    unsigned = b"unsigned bytes, never checked\n"
    server.start()

    (server.root / "evil.bin").write_bytes(unsigned)
    server.sftp("acme", "mkdir upload\nmkdir staging\n"
                        f"put {server.root / 'big.bin.sig'} upload/big.bin.sig\n"
                        f"put {server.root / 'chunk.bin'} staging/chunk.bin\n"
                        f"put {server.root / 'evil.bin'} staging/evil.bin\n")
    client = server.paramiko("acme")
    sftp = client.open_sftp()
    with sftp.open("/staging/chunk.bin", "rb") as source, \
            sftp.open("/upload/big.bin", "wb") as f:
        for i in range(copies):
            copy_data(sftp, source, f, len(chunk), i * len(chunk))
    # The upload is answered once its record is written; its handler starts then.
    time.sleep(0.5)
    sftp.posix_rename("/staging/evil.bin", "/upload/big.bin")
    sftp.close()
    client.close()

    def settled():
        return handler_events(server, "signature.valid") or handler_events(server, "handler.refused")
    wait_for(settled, timeout=120, what="the signature check")
    time.sleep(1)
    valid = handler_events(server, "signature.valid")
    refused = handler_events(server, "handler.refused")
    delivered = home / "valid" / "big.bin"
    if delivered.exists():
        # The check and the move were done before the rename: the signed file arrived.
        with open(delivered, "rb") as f:
            head = f.read(len(unsigned))
        assert head != unsigned
        assert os.path.getsize(delivered) == size
        assert [e["sha256"] for e in valid] == [signed_sha]
        assert (home / "upload" / "big.bin").read_bytes() == unsigned
    else:
        # The rename landed first: the file there is not the one verified, and stays.
        assert not valid, valid
        assert len(refused) == 1, refused
        assert refused[0]["path"] == "/upload/big.bin"
        assert "replaced" in refused[0]["message"], refused[0]
        assert (home / "upload" / "big.bin").read_bytes() == unsigned
        assert names(home / "valid") == []
    for event in valid:
        assert event["sha256"] == signed_sha
    assert not handler_events(server, "handler.failed")


def test_quick_uploads_of_one_name_stay_apart_and_true(server):
    home = server.add_account("acme", password=PASSWORD)
    configure(server, """
[[handler]]
name = "unique-names"
on = ["upload.finished"]
path = "/drop/*"

[handler.uuid-prefix]
""")
    server.start()
    first, third = b"the same bytes\n", b"other bytes\n"
    (server.root / "one.txt").write_bytes(first)
    (server.root / "two.txt").write_bytes(first)
    (server.root / "three.txt").write_bytes(third)
    server.sftp("acme", "mkdir drop\n"
                        f"put {server.root / 'one.txt'} drop/dup.txt\n"
                        f"put {server.root / 'two.txt'} drop/dup.txt\n"
                        f"put {server.root / 'three.txt'} drop/dup.txt\n")
    wait_for(lambda: len(handler_events(server, "file.prefixed")) == 3, what="three outcomes")
    held = names(home / "drop")
    assert len(held) == 3 and all(n.endswith("-dup.txt") and len(n) == 36 + 1 + 7 for n in held), held
    contents = sorted((home / "drop" / n).read_bytes() for n in held)
    assert contents == sorted([first, first, third])
    uploads = [e for e in server.events() if e["name"] == "upload.finished"]
    assert len(uploads) == 3
    for upload in uploads:
        assert upload["attrs"]["uploaded_as"] == "/drop/dup.txt"
        on_disk = (home / upload["path"].lstrip("/")).read_bytes()
        assert upload["sha256"] == sha(on_disk)
    prefixed = handler_events(server, "file.prefixed")
    assert sorted(e["path2"] for e in prefixed) == sorted(u["path"] for u in uploads)
    assert all(e["path"] == "/drop/dup.txt" for e in prefixed)
    assert all("committed" in e["message"] for e in prefixed)
    assert not handler_events(server, "handler.failed")
    assert not handler_events(server, "handler.refused")
    # `put -p` asks for the file's mode and times at close: they go to the file as named at
    # commit, not to the client's name (where another file may stand).
    (server.root / "four.txt").write_bytes(b"four\n")
    os.chmod(server.root / "four.txt", 0o600)
    server.sftp("acme", f"put -p {server.root / 'four.txt'} drop/dup.txt\n")
    four = [n for n in names(home / "drop") if (home / "drop" / n).read_bytes() == b"four\n"]
    assert len(four) == 1
    assert (os.stat(home / "drop" / four[0]).st_mode & 0o777) == 0o600
    assert not (home / "drop" / "dup.txt").exists()


def test_a_dispatch_leaves_a_replacement_alone(server):
    home = server.add_account("acme", password=PASSWORD)
    out = server.root / "dispatched"
    configure(server, f"""
[[handler]]
name = "route"
on = ["upload.finished"]
path = "/in/*"
delay = 3

[handler.dispatch]
[[handler.dispatch.rule]]
path = "*.csv"
to = "{out}/${{NAME}}"
""")
    server.start()
    old, new = b"q,1\nfirst\n", b"q,2\nreplacement\n"
    (server.root / "old.csv").write_bytes(old)
    (server.root / "new.csv").write_bytes(new)
    # The second upload replaces the first before the first one's job runs.
    server.sftp("acme", "mkdir in\n"
                        f"put {server.root / 'old.csv'} in/r.csv\n"
                        f"put {server.root / 'new.csv'} in/r.csv\n")
    uploads = [e for e in server.events() if e["name"] == "upload.finished"]
    assert [u["sha256"] for u in uploads] == [sha(old), sha(new)]
    wait_for(lambda: handler_events(server, "file.dispatched")
             and handler_events(server, "handler.refused"), what="both jobs")
    refused = handler_events(server, "handler.refused")
    assert len(refused) == 1
    assert refused[0]["attrs"]["trigger"] == str(uploads[0]["seq"])
    assert "not the file its event names" in refused[0]["message"]
    dispatched = handler_events(server, "file.dispatched")
    assert len(dispatched) == 1
    assert dispatched[0]["attrs"]["trigger"] == str(uploads[1]["seq"])
    assert dispatched[0]["sha256"] == sha(new)
    assert (out / "r.csv").read_bytes() == new
    assert names(home / "in") == []
