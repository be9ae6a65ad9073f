"""Maximum file sizes of accounts, groups and services, with OpenSSH sftp and curl: the smallest
bound applies, an upload beyond it is refused and leaves nothing under its name, and the
bounds are shown by `wharf account show` and carried by `wharf export` and `wharf apply`."""

import ftplib
import json
import subprocess

import pytest

from conftest import WharfServer, random_file, sha256

KIB = 1024
PASSWORD = "size-bound-pass-42"


def bounded_account(server, ssh_bound=None):
    """Account `sam` (512 KiB) in group `bounded` (1 MiB); with `ssh_bound`, the SSH service
    sets its own bound too. Starts the server."""
    server.wharf("group", "add", "bounded", "--home-template", f"{server.homes}/${{USER}}",
                 "--create-home", "--allow", "/**=all", "--max-file-size", "1M", check=True)
    server.add_account("sam", password=PASSWORD, groups=["bounded"])
    server.wharf("account", "set", "sam", "--max-file-size", "512K", check=True)
    if ssh_bound is not None:
        config = server.root / "wharf.toml"
        text = config.read_text()
        ssh_port = f"port = {server.port}\n"
        assert text.count(ssh_port) == 1
        config.write_text(text.replace(ssh_port, f"{ssh_port}max_file_size = {ssh_bound}\n"))
    server.start()
    home = server.homes / "sam"
    home.mkdir(parents=True, exist_ok=True)
    return home


def put_sftp(server, local, name):
    return server.sftp("sam", f"put {local} {name}\n", check=False)


def put_https(server, local, name):
    """(status, body) of a REST API upload with curl."""
    url = f"https://127.0.0.1:{server.https_port}/api/v1/files/{name}"
    result = subprocess.run(
        ["curl", "-sS", "-k", "-u", f"sam:{PASSWORD}", "-T", str(local), "-o", "-",
         "-w", "\n%{http_code}", url],
        capture_output=True, timeout=60)
    body, _, status = result.stdout.rpartition(b"\n")
    return int(status or 0), body


def names(home):
    return sorted(p.name for p in home.iterdir())


def refused_sftp(server, home, local, name, bound):
    """Puts `local` over SFTP, expects a refusal, and checks nothing beyond `bound` is stored.
    (What a refused SFTP upload leaves is the subject of the test below; this one removes it.)"""
    result = put_sftp(server, local, name)
    assert result.returncode != 0, result.stdout
    left = home / name
    if left.exists():
        assert left.stat().st_size <= bound
        left.unlink()


def test_the_smaller_of_account_and_group_bounds_refuses_uploads(server):
    home = bounded_account(server)
    big = random_file(server.root / "big.bin", 600 * KIB)
    small = random_file(server.root / "small.bin", 400 * KIB)

    # 600 KiB is within the group's 1 MiB but beyond the account's 512 KiB.
    refused_sftp(server, home, big, "big.bin", 512 * KIB)
    assert put_sftp(server, small, "small.bin").returncode == 0
    assert sha256(home / "small.bin") == sha256(small)

    # The REST API is bound alike: nothing is kept under the name, or beside it.
    status, body = put_https(server, big, "big-https.bin")
    assert status == 507, (status, body)
    assert names(home) == ["small.bin"]
    status, body = put_https(server, small, "small-https.bin")
    assert status == 201, (status, body)
    assert json.loads(body)["sha256"] == sha256(small)
    # And FTPS: 452, and the upload is discarded. The server writes in 256 KiB batches, so
    # 900 KiB crosses the bound while data still flows; it then stops reading and closes the
    # data connection without a TLS goodbye, hence no storbinary here.
    ftp = server.ftp_client("ftps", "sam", PASSWORD)
    data = ftp.transfercmd("STOR big-ftps.bin")
    try:
        data.sendall(random_file(server.root / "ftp.bin", 900 * KIB).read_bytes())
    except OSError:
        pass
    data.close()
    with pytest.raises(ftplib.error_temp, match="^452"):
        ftp.getresp()
    ftp.quit()
    assert names(home) == ["small-https.bin", "small.bin"]

    # Without its own bound the account has its group's: 600 KiB passes, 1 MiB + 1 does not.
    server.wharf("account", "set", "sam", "--max-file-size", "none", check=True)
    assert put_sftp(server, big, "big.bin").returncode == 0
    assert sha256(home / "big.bin") == sha256(big)
    huge = random_file(server.root / "huge.bin", 1024 * KIB + 1)
    refused_sftp(server, home, huge, "huge.bin", 1024 * KIB)
    status, _ = put_https(server, huge, "huge-https.bin")
    assert status == 507
    assert names(home) == ["big.bin", "small-https.bin", "small.bin"]
    assert not [e for e in server.events()
                if e["name"] == "upload.finished" and e["bytes"] > 1024 * KIB]


def test_a_smaller_service_bound_wins_on_that_service_only(server):
    home = bounded_account(server, ssh_bound=256 * KIB)
    mid = random_file(server.root / "mid.bin", 400 * KIB)
    small = random_file(server.root / "small.bin", 200 * KIB)

    # Within the account's 512 KiB, beyond the SSH service's 256 KiB.
    refused_sftp(server, home, mid, "mid.bin", 256 * KIB)
    assert put_sftp(server, small, "small.bin").returncode == 0
    assert sha256(home / "small.bin") == sha256(small)
    # HTTPS sets no bound of its own: the account's 512 KiB applies there.
    status, body = put_https(server, mid, "mid.bin")
    assert status == 201, (status, body)
    assert sha256(home / "mid.bin") == sha256(mid)


@pytest.mark.parametrize("ssh_bound", [None, 256 * KIB])
def test_a_refused_sftp_upload_leaves_nothing_under_its_name(server, ssh_bound):
    """OpenSSH sftp closes the handle after a refused write; the close must not store the
    bytes taken before the refusal."""
    home = bounded_account(server, ssh_bound=ssh_bound)
    big = random_file(server.root / "big.bin", 600 * KIB)
    result = put_sftp(server, big, "big.bin")
    assert result.returncode != 0, result.stdout
    assert names(home) == [], [(p.name, p.stat().st_size) for p in home.iterdir()]
    finished = [e for e in server.events() if e["name"] == "upload.finished"]
    assert finished == []


def test_bounds_are_shown_exported_and_applied(server, tmp_path):
    server.wharf("group", "add", "bounded", "--home-template", "/srv/wharf/${USER}",
                 "--max-file-size", "1M", check=True)
    server.wharf("account", "add", "sam", "--group", "bounded", "--max-file-size", "512K",
                 check=True)
    server.wharf("account", "add", "una", "--group", "bounded", check=True)

    shown = json.loads(server.wharf("account", "show", "sam", "--json", check=True).stdout)
    assert shown["max_file_size"] == 512 * KIB
    una = json.loads(server.wharf("account", "show", "una", "--json", check=True).stdout)
    assert una["max_file_size"] is None
    assert "max file size: 512 KiB" in server.wharf("account", "show", "sam", check=True).stdout
    group = json.loads(server.wharf("group", "show", "bounded", "--json", check=True).stdout)
    assert group["max_file_size"] == 1024 * KIB
    assert "max file size: 1 MiB" in server.wharf("group", "show", "bounded", check=True).stdout

    exported = server.wharf("export", check=True).stdout
    assert "max_file_size = 1048576" in exported and "max_file_size = 524288" in exported
    # Unset bounds are left out, not written as zero.
    assert exported.count("max_file_size") == 2
    exported_file = tmp_path / "export.toml"
    exported_file.write_text(exported)
    out = server.wharf("apply", str(exported_file), check=True).stdout
    assert out.strip() == "0 created, 0 updated, 4 unchanged"

    # The export builds the same bounds in another store; applying it again changes nothing.
    other = WharfServer(tmp_path / "other")
    assert other.wharf("apply", str(exported_file), check=True).stdout.strip() \
        == "3 created, 1 updated, 0 unchanged"
    assert other.wharf("apply", str(exported_file), check=True).stdout.strip() \
        == "0 created, 0 updated, 4 unchanged"
    shown = json.loads(other.wharf("account", "show", "sam", "--json", check=True).stdout)
    assert shown["max_file_size"] == 512 * KIB

    # A bound set to "none" is cleared, and the export no longer names it.
    server.wharf("account", "set", "sam", "--max-file-size", "none", check=True)
    assert server.wharf("export", check=True).stdout.count("max_file_size") == 1

    # A bad bound in a file names the file and line, and changes nothing.
    bad = tmp_path / "bad.toml"
    bad.write_text('[[group]]\nname = "bounded"\nhome_template = "/srv/wharf/${USER}"\n'
                   'max_file_size = 0\n')
    result = server.wharf("apply", str(bad))
    assert result.returncode == 1
    assert f"{bad}:4: max_file_size must be at least 1 byte" in result.stderr
    group = json.loads(server.wharf("group", "show", "bounded", "--json", check=True).stdout)
    assert group["max_file_size"] == 1024 * KIB
    # And on the command line, sizes are checked before anything is stored.
    result = server.wharf("group", "set", "bounded", "--max-file-size", "12X")
    assert result.returncode == 1 and "--max-file-size" in result.stderr
