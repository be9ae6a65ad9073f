"""Active-passive pairs: a standby restored from the active node's backup listens on nothing
until `wharf takeover`, or, on a shared PostgreSQL store, until the active node's heartbeat
stops; a hung active that comes back finds its name taken and stops. The time from the
active's end to the first successful login on the standby is measured with paramiko and
written to target/test-reports/failover.txt."""

import os
import signal
import subprocess
import time
from pathlib import Path

import paramiko

from conftest import BIN, ROOT, WharfServer

PASSWORD = "correct horse battery staple"
REPORT = ROOT / "target" / "test-reports" / "failover.txt"


def wharf(*args):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=120)


def logs_in(server) -> bool:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", port=server.port, username="alice", key_filename=str(server.key),
                       allow_agent=False, look_for_keys=False, timeout=2, banner_timeout=2,
                       auth_timeout=2)
        client.open_sftp().listdir(".")
        return True
    except (OSError, paramiko.SSHException, EOFError):
        return False
    finally:
        client.close()


def first_login_after(server, since, timeout=30) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if logs_in(server):
            return time.time() - since
        time.sleep(0.05)
    raise AssertionError(f"no login within {timeout} s: {server.log.read_text()[-3000:]}")


def report(line):
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with open(REPORT, "a") as f:
        f.write(line + "\n")


def standby_of(active, root, *restore_args):
    archive = root.parent / f"{root.name}.tar"
    active.wharf("backup", str(archive), check=True)
    restored = wharf("restore", archive, "--into", root, *restore_args)
    assert restored.returncode == 0, restored.stderr
    return WharfServer.restored(root, active)


def test_a_standby_serves_when_told(tmp_path):
    a = WharfServer(tmp_path / "a")
    b = None
    try:
        a.add_account("alice", password=PASSWORD)
        a.start()
        a.sftp("alice", "mkdir before-the-backup\n")
        b = standby_of(a, tmp_path / "b")
        b.start_standby()
        time.sleep(1)
        assert not b.listening()
        second = b.wharf("serve", "--standby")
        assert second.returncode != 0 and "another standby runs" in second.stderr, second.stderr
        asked = time.time()
        took = b.wharf("takeover")
        assert took.returncode == 0, took.stderr
        assert "now runs here" in took.stdout
        waited = first_login_after(b, asked)
        report(f"takeover on command (SQLite store restored from a backup): first login {waited:.2f} s after `wharf takeover`")
        assert "before-the-backup" in b.sftp("alice", "ls\n").stdout
        names = [e["name"] for e in b.events()]
        assert "node.standby" in names
        took_over = b.wait_event("node.took_over")
        assert took_over["attrs"]["cause"] == "command"
        assert b.wharf("audit", "verify").returncode == 0
        # With no standby to take it, a request is withdrawn and said so.
        alone = a.wharf("takeover", "--wait", "1")
        assert alone.returncode != 0 and "no standby took the request" in alone.stderr
    finally:
        a.stop()
        if b:
            b.stop()


def test_a_standby_on_the_shared_store_takes_over_from_a_dead_or_hung_active(cluster, tmp_path):
    a = cluster.node("a")
    a.add_account("alice", password=PASSWORD)
    a.start()
    assert logs_in(a)
    b = standby_of(a, tmp_path / "b", "--no-store", "--node", "b")
    cluster.nodes["b"] = b
    b.start_standby("a")
    time.sleep(1)
    assert not b.listening()

    # A hung active (stopped, not dead): the standby waits for its heartbeat to age out.
    os.kill(a.proc.pid, signal.SIGSTOP)
    hung = time.time()
    waited = first_login_after(b, hung)
    report(f"takeover on heartbeat (active hung, shared PostgreSQL, node_timeout 6 s): first login {waited:.2f} s after the active stopped")
    # node_timeout (6 s) from the last heartbeat, which came up to one heartbeat (2 s) before.
    assert waited >= 3.5, waited
    took_over = b.wait_event("node.took_over")
    assert took_over["attrs"]["cause"] == "heartbeat" and took_over["attrs"]["from_node"] == "a"
    # Woken up, the old active finds its name taken and stops by itself.
    os.kill(a.proc.pid, signal.SIGCONT)
    assert a.proc.wait(timeout=15) != 0
    assert "was taken over by another process" in a.log.read_text()

    # Roles swapped: a stands by, b is killed outright.
    a.start_standby("b")
    time.sleep(1)
    assert not a.listening()
    b.proc.kill()
    killed = time.time()
    b.proc.wait()  # reaped, as its service manager would
    waited = first_login_after(a, killed)
    report(f"takeover on heartbeat (active killed with SIGKILL on the same machine, shared PostgreSQL): first login {waited:.2f} s after the kill")
    verify = a.wharf("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # Each node of the pair kept its own chain, each one whole.
    assert "node a:" in verify.stdout and "node b:" in verify.stdout, verify.stdout
    assert b.wharf("audit", "verify").returncode == 0
