"""The browser web client in headless Chromium (Debian's chromium, driven by playwright-core):
log in, upload two files by the picker and two by drag and drop with a progress bar each,
download back with a matching SHA-256, see a refused upload explained, sort, rename, delete,
create a folder, log out. Screenshots land in tests/browser/artifacts/."""

import hashlib
import json
import shutil
import subprocess

from conftest import ROOT, random_file, sha256

PASSWORD = "web-pass-123"
BROWSER_DIR = ROOT / "tests" / "browser"


def test_web_client_in_chromium(server):
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--deny", r"re:\.exe$=write,overwrite", "--allow", "/**=all",
                 check=True)
    server.add_account("carol", password=PASSWORD, groups=["partners"])
    server.start()
    upload = random_file(server.root / "quarterly report.bin", 5_000_000)
    refused = random_file(server.root / "setup.exe", 10_000)
    artifacts = BROWSER_DIR / "artifacts"
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    run = subprocess.run(
        ["node", str(BROWSER_DIR / "webclient.mjs"), f"https://127.0.0.1:{server.https_port}",
         "carol", PASSWORD, str(upload), str(refused), str(artifacts)],
        capture_output=True, text=True, timeout=180, cwd=BROWSER_DIR)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["loginUrl"] == "/login"
    assert "Wrong account or password" in seen["badLogin"]
    assert sorted(seen["pickedOk"]) == ["notes.txt", "quarterly report.bin"]
    assert seen["progress"] == [100, 100] and seen["uploadState"] == "uploaded"
    assert (server.homes / "carol" / "notes.txt").read_text() == "second file of a multi-file upload\n"
    assert sha256(server.homes / "carol" / "dropped-too.txt") == hashlib.sha256(b"x" * 3000).hexdigest()
    by_size = ["dropped.txt", "notes.txt", "dropped-too.txt", "quarterly report.bin"]
    assert seen["bySize"] == by_size and seen["bySizeReversed"] == by_size[::-1]
    assert seen["downloadSha"] == sha256(upload)
    assert sha256(server.homes / "carol" / "quarterly report.bin") == sha256(upload)
    assert "refused" in seen["refusedState"] and "not uploaded" in seen["message"]
    assert seen["afterLogout"] == "/login"
    assert seen["consoleErrors"] == []
    assert not (server.homes / "carol" / "setup.exe").exists()
    assert (server.homes / "carol" / "reports").is_dir()
    assert seen["confirmSeen"] is True
    assert not (server.homes / "carol" / "dropped.txt").exists()
    assert not (server.homes / "carol" / "renamed.txt").exists()
    server.wait_event("upload.finished", protocol="https", account="carol", path="/dropped.txt")
    server.wait_event("entry.renamed", protocol="https", account="carol", path="/dropped.txt")
    server.wait_event("file.deleted", protocol="https", account="carol", path="/renamed.txt")
    for shot in ["1-login", "3-folder", "4-uploaded", "5-refused", "6-subfolder", "7-phone"]:
        assert (artifacts / f"{shot}.png").stat().st_size > 5000, shot
    server.wait_event("upload.finished", protocol="https", account="carol", path="/quarterly report.bin")
    denied = server.wait_event("permission.denied", protocol="https", account="carol", path="/setup.exe")
    assert denied["attrs"]["verb"] == "write"
    server.wait_event("login.failed", protocol="https", account="carol")
