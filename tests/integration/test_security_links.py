"""Links inside a home never walk around the permission rules: a rule decides on the file
really reached, a hard link cannot grant what the file's own place refuses, WebDAV follows
no link, listings show only names the rules let the account list, and links stay inside
the home after any rename. Each attack is made with a real client."""

import os
import stat
import subprocess

import pytest

from conftest import random_file

PASSWORD = "links-pass-1234"
MODIFY = "write,overwrite,append,delete,rename,setattr,mkdir,rmdir"


@pytest.fixture
def partner(server):
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--deny", f"/ro/**={MODIFY}", "--deny", "/secret/**=list,read",
                 "--allow", "/**=all", check=True)
    home = server.add_account("mallory", password=PASSWORD, groups=["partners"])
    server.add_ftp_service()
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "ro").mkdir()
    (home / "ro" / "keep.txt").write_text("keep\n")
    (home / "ro" / "keep2.txt").write_text("keep two\n")
    os.chmod(home / "ro" / "keep2.txt", 0o644)
    (home / "secret").mkdir()
    (home / "secret" / "s.txt").write_text("secret\n")
    (home / "rw").mkdir()
    (home / "rw" / "mine.txt").write_text("mine\n")
    return home


def test_sftp_links_are_decided_where_they_lead(server, partner):
    home = partner
    evil = random_file(server.root / "evil.txt", 100)
    # The links can be made (they expose nothing the rules refuse to see), but nothing
    # through them may do what the rules refuse at the place they lead to.
    server.sftp("mallory", "symlink /ro alias\nsymlink / top\n")
    for command in [f"put {evil} alias/evil.txt", "rm alias/keep.txt", "rename alias/keep.txt x.txt",
                    "chmod 600 alias/keep.txt", f"put {evil} top/ro/evil.txt", "mkdir alias/sub"]:
        r = server.sftp("mallory", command + "\n", check=False)
        assert r.returncode != 0, command
        assert "ermission denied" in r.stderr, (command, r.stderr)
    # sftp looks the name up first; the name under /secret is not shown to it at all.
    r = server.sftp("mallory", "get top/secret/s.txt got.txt\n", check=False)
    assert r.returncode != 0
    assert sorted(os.listdir(home / "ro")) == ["keep.txt", "keep2.txt"]
    assert stat.S_IMODE(os.stat(home / "ro" / "keep.txt").st_mode) != 0o600
    assert not (server.root / "got.txt").exists()
    # A link to a folder whose contents the rules hide can be made (the folder itself may
    # be listed), but nothing inside can be read or seen through it.
    server.sftp("mallory", "symlink /secret s\n")
    r = server.sftp("mallory", "get s/s.txt got.txt\n", check=False)
    assert r.returncode != 0
    assert not (server.root / "got.txt").exists()
    r = server.sftp("mallory", "ls -1 s/\n", check=False)
    assert "s.txt" not in r.stdout
    # Through a link that leads where the rules allow, everything works as usual.
    server.sftp("mallory", f"symlink /rw mine\nput {evil} mine/new.txt\nget mine/mine.txt got.txt\n"
                           "rm mine/new.txt\n")
    assert (server.root / "got.txt").read_text() == "mine\n"
    assert not (home / "rw" / "new.txt").exists()
    # The records name the file really reached.
    denied = [e for e in server.events() if e["name"] == "permission.denied" and e.get("path")]
    assert any(e["path"] == "/ro/evil.txt" for e in denied), denied
    assert any(e["path"] == "/ro/keep.txt" and e["attrs"]["verb"] == "delete" for e in denied)
    uploaded = [e for e in server.events() if e["name"] == "upload.finished"]
    assert any(e["path"] == "/rw/new.txt" and e["attrs"].get("via") == "/mine/new.txt" for e in uploaded)


def test_hard_links_need_the_verbs_of_both_ends(server, partner):
    home = partner
    # OpenSSH sftp's `ln` (hardlink@openssh.com): /h.txt would allow overwrite and setattr
    # that /ro/keep2.txt refuses.
    r = server.sftp("mallory", "ln /ro/keep2.txt /h.txt\n", check=False)
    assert r.returncode != 0
    assert not (home / "h.txt").exists()
    # SETSTAT through a name that is not there cannot reach the file either (paramiko).
    client = server.paramiko("mallory", password=PASSWORD)
    try:
        sftp = client.open_sftp()
        with pytest.raises(IOError):
            sftp.truncate("/h.txt", 0)
        with pytest.raises(IOError):
            sftp.chmod("/ro/keep2.txt", 0o666)
    finally:
        client.close()
    assert (home / "ro" / "keep2.txt").read_text() == "keep two\n"
    assert stat.S_IMODE(os.stat(home / "ro" / "keep2.txt").st_mode) == 0o644
    # Where both places allow the same, hard links work.
    server.sftp("mallory", "ln /rw/mine.txt /mine-too.txt\n")
    assert os.stat(home / "mine-too.txt").st_ino == os.stat(home / "rw" / "mine.txt").st_ino
    denied = [e for e in server.events() if e["name"] == "permission.denied"
              and "hard link" in (e.get("message") or "")]
    assert denied and denied[0]["path"] == "/h.txt"


def test_listings_show_only_names_the_rules_let_the_account_list(server, partner):
    home = partner
    os.symlink("secret", home / "s")
    r = server.sftp("mallory", "ls -1 /secret\nls -1 /s/\n", check=False)
    assert "s.txt" not in r.stdout
    r = server.sftp("mallory", "ls -l /secret/s.txt\n", check=False)
    assert r.returncode != 0
    ftp = server.ftp_client("ftp", "mallory", PASSWORD)
    try:
        assert ftp.nlst("/secret") == []
        lines = []
        ftp.retrlines("MLSD /secret", lines.append)
        assert not any("s.txt" in line for line in lines)
    finally:
        ftp.quit()
    listed = [e for e in server.events() if e["name"] == "folder.listed" and e["path"] == "/secret"]
    assert listed and all(e["attrs"]["entries"] == "0" for e in listed)
    assert any(e["attrs"].get("hidden") == "1" for e in listed)


def curl(server, *args):
    return subprocess.run(["curl", "-sk", "-u", f"mallory:{PASSWORD}", "-o", "/dev/null",
                           "-w", "%{http_code}", *args], capture_output=True, text=True, timeout=60)


def test_webdav_follows_no_link(server, partner):
    home = partner
    (home / "rw" / "data").mkdir()
    for i in range(3):
        (home / "rw" / "data" / f"f{i}.txt").write_text(f"{i}\n")
    os.symlink("rw/data", home / "linkdir")
    os.symlink("rw/mine.txt", home / "linkfile")
    base = f"https://127.0.0.1:{server.https_port}/dav"
    r = curl(server, "-X", "DELETE", f"{base}/linkdir")
    assert r.stdout == "404", r.stdout
    assert sorted(os.listdir(home / "rw" / "data")) == ["f0.txt", "f1.txt", "f2.txt"]
    assert curl(server, f"{base}/linkfile").stdout == "404"
    assert curl(server, f"{base}/linkdir/f0.txt").stdout == "404"
    listing = subprocess.run(["curl", "-sk", "-u", f"mallory:{PASSWORD}", "-X", "PROPFIND",
                              "-H", "Depth: 1", f"{base}/"], capture_output=True, text=True,
                             timeout=60).stdout
    assert "linkdir" not in listing and "linkfile" not in listing and "rw" in listing
    # The REST API and SFTP still follow links inside the home (to where the rules decide).
    got = subprocess.run(["curl", "-sk", "-u", f"mallory:{PASSWORD}",
                          f"https://127.0.0.1:{server.https_port}/api/v1/files/linkfile"],
                         capture_output=True, text=True, timeout=60)
    assert got.stdout == "mine\n"


def test_links_stay_inside_the_home_after_renames(server, partner):
    home = partner
    server.sftp("mallory", "mkdir a\nmkdir a/b\nsymlink ../../rw/mine.txt a/b/up\n"
                           "rename a/b/up /up\nrename a /z\n")
    for link in [home / "up"]:
        target = os.path.realpath(link)
        assert target == str((home / "rw" / "mine.txt").resolve()), target
    server.sftp("mallory", "get up got.txt\n")
    assert (server.root / "got.txt").read_text() == "mine\n"
    # READLINK says what is stored, in the client's terms, and never climbs above the home.
    os.makedirs(home / "deep" / "er")
    os.symlink("../../..", home / "deep" / "er" / "esc")
    # A relative link of plain names can only lead below its folder: it is kept as given.
    server.sftp("mallory", "symlink mine.txt /rw/rel\nget /rw/rel got-rel.txt\n")
    assert os.readlink(home / "rw" / "rel") == "mine.txt"
    assert (server.root / "got-rel.txt").read_text() == "mine\n"
    client = server.paramiko("mallory", password=PASSWORD)
    try:
        sftp = client.open_sftp()
        assert sftp.readlink("/up") == "/rw/mine.txt"
        assert sftp.readlink("/rw/rel") == "mine.txt"
        with pytest.raises(IOError):
            sftp.readlink("/deep/er/esc")
    finally:
        client.close()


@pytest.mark.parametrize("mode", ["sftp", "ftp"])
def test_setuid_and_sticky_bits_are_never_set(server, partner, mode):
    home = partner
    (home / "rw" / "tool.sh").write_text("#!/bin/sh\n")
    if mode == "sftp":
        server.sftp("mallory", "chmod 6755 /rw/tool.sh\nmkdir /rw/d\nchmod 1777 /rw/d\n")
    else:
        ftp = server.ftp_client("ftp", "mallory", PASSWORD)
        try:
            ftp.sendcmd("SITE CHMOD 4755 /rw/tool.sh")
            ftp.mkd("/rw/d")
            ftp.sendcmd("SITE CHMOD 1777 /rw/d")
        finally:
            ftp.quit()
    assert stat.S_IMODE(os.stat(home / "rw" / "tool.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(home / "rw" / "d").st_mode) == 0o777
    changed = [e for e in server.events() if e["name"] == "attributes.changed"]
    assert any(e["attrs"].get("ignored") in ("6000", "4000") for e in changed)
    assert any(e["attrs"].get("ignored") == "1000" for e in changed)


def test_moves_never_change_the_rules_on_what_they_move(server, partner):
    home = partner
    (home / "rw" / "sub").mkdir()
    (home / "rw" / "sub" / "f.txt").write_text("f\n")
    # A folder whose contents the rules treat apart cannot be moved away and back.
    for command in ["rename /ro /x", "rename /secret /s2", "rename /secret/s.txt /s.txt"]:
        r = server.sftp("mallory", command + "\n", check=False)
        assert r.returncode != 0, command
    assert sorted(os.listdir(home / "ro")) == ["keep.txt", "keep2.txt"]
    assert (home / "secret" / "s.txt").exists() and not (home / "s.txt").exists()
    # Where the rules are alike, folders and files move as usual.
    server.sftp("mallory", "rename /rw/sub /rw/moved\nrename /rw/moved/f.txt /rw/f2.txt\n"
                           "mkdir /new\nrename /new /newer\n")
    assert (home / "rw" / "f2.txt").read_text() == "f\n" and (home / "newer").is_dir()
    denied = [e for e in server.events() if e["name"] == "permission.denied"
              and (e.get("message") or "").startswith("move refused")]
    assert {e["path"] for e in denied} >= {"/ro", "/secret", "/secret/s.txt"}
    # A relative link made on the server cannot be moved to where it would lead outside,
    # and a hard link to a link links the file the link leads to, under that file's rules.
    os.makedirs(home / "a" / "b")
    os.symlink("../../rw", home / "a" / "b" / "up")
    client = server.paramiko("mallory", password=PASSWORD)
    try:
        sftp = client.open_sftp()
        with pytest.raises(IOError):
            sftp.posix_rename("/a/b/up", "/up")
        assert os.readlink(home / "a" / "b" / "up") == "../../rw"
    finally:
        client.close()
    os.symlink("ro/keep2.txt", home / "to-ro")
    r = server.sftp("mallory", "ln /to-ro /h2.txt\n", check=False)
    assert r.returncode != 0 and not (home / "h2.txt").exists()
    os.symlink("rw/f2.txt", home / "to-rw")
    server.sftp("mallory", "ln /to-rw /h3.txt\n")
    assert not os.path.islink(home / "h3.txt")
    assert os.stat(home / "h3.txt").st_ino == os.stat(home / "rw" / "f2.txt").st_ino


def test_a_drop_folder_takes_uploads_it_does_not_show(server):
    server.wharf("group", "add", "droppers", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--deny", "/drop/**=list,read", "--allow", "/**=all", check=True)
    home = server.add_account("dora", groups=["droppers"])
    server.start()
    (home / "drop").mkdir(parents=True)
    src = random_file(server.root / "f.bin", 5000)
    server.sftp("dora", f"put {src} /drop/f.bin\nput {src} /drop/f.bin\n")
    assert (home / "drop" / "f.bin").read_bytes() == src.read_bytes()
    r = server.sftp("dora", "ls -1 /drop\n")
    assert "f.bin" not in r.stdout.replace("ls -1 /drop", "")
    r = server.scp(str(src), "dora@127.0.0.1:/drop/g.bin")
    assert (home / "drop" / "g.bin").exists()
