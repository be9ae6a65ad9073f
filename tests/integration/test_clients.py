"""Other real clients: paramiko (prefetch and pipelined writes) and curl (sftp://, scp://)."""

import subprocess

import pytest

from conftest import random_file, sha256


def test_paramiko_prefetch_download_and_pipelined_upload(server):
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    # Several times paramiko's prefetch and write windows, small enough for its Python crypto.
    src = random_file(server.root / "big.bin", 24 * 1024 * 1024)
    client = server.paramiko("alice")
    sftp = client.open_sftp()
    # put() pipelines its writes (no wait for each status).
    sftp.put(str(src), "big.bin")
    assert sha256(home / "big.bin") == sha256(src)
    # get() prefetches: it sends READs for the whole file before reading replies.
    sftp.get("big.bin", str(server.root / "big-back.bin"))
    assert sha256(server.root / "big-back.bin") == sha256(src)
    # Parallel writes at scattered offsets on one handle.
    data = src.read_bytes()[: 4 * 1024 * 1024]
    with sftp.open("scattered.bin", "wb") as f:
        f.set_pipelined(True)
        chunks = [(i, data[i : i + 65536]) for i in range(0, len(data), 65536)]
        for offset, chunk in reversed(chunks):
            f.seek(offset)
            f.write(chunk)
    assert (home / "scattered.bin").read_bytes() == data
    event = server.wait_event("upload.finished", path="/scattered.bin")
    # Out-of-order writes are re-hashed at commit: the digest is of the final file.
    assert event["sha256"] == sha256(home / "scattered.bin")
    client.close()


def curl(*args):
    return subprocess.run(["curl", "--silent", "--show-error", *args], capture_output=True, timeout=60)


@pytest.mark.parametrize("scheme", ["sftp", "scp"])
def test_curl(server, scheme):
    # Debian 12's curl uses libssh2 1.10, which predates encrypt-then-MAC: the service
    # must add a plain SHA-2 MAC for it (the default offers only EtM MACs).
    config = server.root / "wharf.toml"
    config.write_text(config.read_text().replace(
        '# macs = ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"]',
        'macs = ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "hmac-sha2-256"]'))
    home = server.add_account("alice")
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    src = random_file(server.root / "c.bin", 2_000_000)
    key = ["--key", str(server.key), "--pubkey", str(server.key) + ".pub", "--insecure", "-u", "alice:"]
    url = f"{scheme}://127.0.0.1:{server.port}/~/c.bin" if scheme == "scp" else f"{scheme}://127.0.0.1:{server.port}/c.bin"
    up = curl(*key, "-T", str(src), url)
    assert up.returncode == 0, up.stderr
    assert sha256(home / "c.bin") == sha256(src)
    down = curl(*key, "-o", str(server.root / "c-back.bin"), url)
    assert down.returncode == 0, down.stderr
    assert sha256(server.root / "c-back.bin") == sha256(src)
    protocol = "scp" if scheme == "scp" else "sftp"
    assert server.wait_event("upload.finished", path="/c.bin", protocol=protocol)["sha256"] == sha256(src)
