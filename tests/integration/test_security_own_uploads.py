"""A session's uploads in progress and WebDAV locks, attacked by a logged-in partner: an
append-only account may not empty a file by opening it again with truncation, renaming an
upload in progress never deletes a file the account may not delete, a refused open leaves
the upload it joined intact, a lock needs the right to change what it locks, homes spelt
differently share their locks, and a deeply nested WebDAV body is refused instead of
taking the server down."""

import subprocess

import paramiko
import pytest

PASSWORD = "own-uploads-Pass-77"


def group(server, name, *rules):
    server.wharf("group", "add", name, "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", *rules, check=True)


def sftp(server, user):
    client = server.paramiko(user, password=PASSWORD)
    return client, client.open_sftp()


def dav(server, user, *args):
    return subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{user}:{PASSWORD}",
                           *args], capture_output=True, text=True, timeout=60).stdout


def test_append_only_cannot_empty_a_file_by_opening_it_again(server):
    group(server, "app", "--allow", "/**=list,read,append")
    home = server.add_account("app1", password=PASSWORD, groups=["app"])
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "log.txt").write_text("line one\nline two\n")
    client, s = sftp(server, "app1")
    appender = s.open("log.txt", "a")
    appender.write(b"appended\n")
    with pytest.raises(PermissionError):
        s.open("log.txt", "w")
    appender.close()
    client.close()
    assert (home / "log.txt").read_text() == "line one\nline two\nappended\n"


def test_renaming_an_upload_in_progress_deletes_nothing_without_delete(server):
    group(server, "nodel", "--allow", "/**=list,read,write,rename")
    group(server, "full", "--allow", "/**=all")
    shared = server.homes / "shared"
    server.add_account("writer", password=PASSWORD, groups=["nodel"], home=shared)
    server.add_account("owner", password=PASSWORD, groups=["full"], home=shared)
    server.start()
    shared.mkdir(parents=True, exist_ok=True)
    c1, s1 = sftp(server, "writer")
    pending = s1.open("report.csv", "w")
    pending.write(b"junk\n")
    c2, s2 = sftp(server, "owner")
    with s2.open("report.csv", "w") as f:
        f.write(b"the owner's report\n")
    s1.rename("report.csv", "x.csv")
    pending.close()
    c1.close()
    c2.close()
    assert (shared / "report.csv").read_bytes() == b"the owner's report\n"
    assert (shared / "x.csv").read_bytes() == b"junk\n"


def test_a_refused_open_leaves_the_upload_it_joined_intact(server):
    group(server, "full", "--allow", "/**=all")
    home = server.add_account("many", password=PASSWORD, groups=["full"])
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    client, s = sftp(server, "many")
    important = s.open("important.dat", "w")
    important.write(b"x" * 400)
    others = [s.open(f"o{i}", "w") for i in range(1023)]
    with pytest.raises(IOError):
        s.open("important.dat", "a")
    for f in others:
        f.close()
    important.close()
    client.close()
    assert (home / "important.dat").read_bytes() == b"x" * 400
    finished = server.wait_event("upload.finished", path="/important.dat")
    assert finished["bytes"] == 400


def test_locks_need_the_right_to_change_and_hold_for_every_spelling_of_a_home(server):
    group(server, "full", "--allow", "/**=all")
    group(server, "nodel", "--allow", "/**=list,read,write,rename")
    shared = server.homes / "shared"
    server.add_account("sa", password=PASSWORD, groups=["full"], home=shared)
    server.add_account("sb", password=PASSWORD, groups=["nodel"], home=shared)
    server.add_account("sd", password=PASSWORD, groups=["full"], home=str(shared) + "/")
    server.add_account("se", password=PASSWORD, groups=["full"], home=str(server.homes) + "//shared")
    server.start()
    shared.mkdir(parents=True, exist_ok=True)
    (shared / "doc.txt").write_text("sa's\n")
    base = f"https://127.0.0.1:{server.https_port}/dav"
    body = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            '<D:locktype><D:write/></D:locktype></D:lockinfo>')
    # sb may not overwrite doc.txt, so it may not lock it either (the lock is refused, and
    # sa still writes).
    assert dav(server, "sb", "-X", "LOCK", "-H", "Timeout: Second-600", "-H", "Content-Type: application/xml",
               "--data", body, f"{base}/doc.txt") in ("403", "423")
    assert dav(server, "sa", "-X", "PUT", "--data", "sa again\n", f"{base}/doc.txt") in ("201", "204")
    # sa locks it; accounts whose homes are the same folder, spelt otherwise, are held off.
    assert dav(server, "sa", "-X", "LOCK", "-H", "Timeout: Second-600", "-H", "Content-Type: application/xml",
               "--data", body, f"{base}/doc.txt") == "200"
    for other in ("sd", "se"):
        assert dav(server, other, "-X", "PUT", "--data", f"{other} wrote\n", f"{base}/doc.txt") == "423", other
    assert (shared / "doc.txt").read_text() == "sa again\n"


@pytest.mark.parametrize("method", ["PROPFIND", "PROPPATCH", "LOCK", "quoted"])
def test_a_deeply_nested_webdav_body_is_refused_and_the_server_stays_up(server, method):
    group(server, "app", "--allow", "/**=list,read,append")
    server.add_account("nest", password=PASSWORD, groups=["app"])
    server.start()
    (server.homes / "nest").mkdir(parents=True, exist_ok=True)
    deep = "<a>" * 3000 + "</a>" * 3000
    # Start tags whose attribute value holds "/>" look self-closing to a naive scan.
    tricky = '<a x="/>">' * 3000 + "</a>" * 3000
    bodies = {
        "quoted": f'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>{tricky}</D:prop></D:propfind>',
        "PROPFIND": f'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>{deep}</D:prop></D:propfind>',
        "PROPPATCH": ('<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
                      f'<x:p xmlns:x="urn:x">{deep}</x:p></D:prop></D:set></D:propertyupdate>'),
        "LOCK": ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
                 f'<D:locktype><D:write/></D:locktype><D:owner>{deep}</D:owner></D:lockinfo>'),
    }
    base = f"https://127.0.0.1:{server.https_port}/dav/"
    assert dav(server, "nest", "-X", "PROPFIND" if method == "quoted" else method, "-H", "Depth: 0", "-H", "Content-Type: application/xml",
               "--data", bodies[method], base) == "400"
    assert server.proc.poll() is None, server.log.read_text()[-2000:]
    assert dav(server, "nest", "-X", "PROPFIND", "-H", "Depth: 1", base) == "207"
    refused = server.wait_event("protocol.error", account="nest")
    assert "nested too deeply" in refused["message"]
