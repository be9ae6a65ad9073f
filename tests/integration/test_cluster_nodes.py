"""The nodes of a cluster and the store's faults, with real `wharf serve` processes on one
throwaway PostgreSQL.

Every node takes its name in the store at start and keeps it with a heartbeat; a second live
node under the same name is refused, naming the live one; a node killed is shown down after
its timeout and its name can then be taken again. PostgreSQL unreachable at start is one clear
line naming host and port, never the password; PostgreSQL stopped while a node serves makes
logins fail closed, in bounded time, with the reason logged, and they work again once it is
back, without restarting the node."""

import ftplib
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import BIN, free_port

# Short timings so a killed node is down within seconds.
HEARTBEAT = 1
TIMEOUT = 3


def short_heartbeat(node):
    config = node.root / "wharf.toml"
    text = config.read_text()
    text = text.replace("[server]\n", f"[server]\nheartbeat = {HEARTBEAT}\nnode_timeout = {TIMEOUT}\n", 1)
    config.write_text(text)


def status(node):
    out = node.wharf("cluster", "status", "--json", check=True).stdout
    return {n["name"]: n for n in json.loads(out)}


def wait_state(node, name, state, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        nodes = status(node)
        if nodes.get(name, {}).get("state") == state:
            return nodes
        time.sleep(0.3)
    raise AssertionError(f"node {name} never {state}: {status(node)}")


def serve_once(node, env=None, timeout=40):
    """Runs `wharf serve` expecting it to exit by itself; its exit code and output."""
    cmd = [str(BIN), "--config", str(node.root / "wharf.toml"), "serve"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_nodes_register_a_live_name_is_refused_and_a_killed_one_taken_over(cluster):
    a = cluster.node("a")
    b = cluster.node("b")
    twin = cluster.node("twin")
    for node in (a, b, twin):
        short_heartbeat(node)
    # The twin is a third node configured with a's name.
    config = twin.root / "wharf.toml"
    config.write_text(config.read_text().replace('name = "twin"', 'name = "a"'))
    a.start()
    b.start()

    nodes = wait_state(b, "a", "up")
    assert nodes["b"]["state"] == "up"
    for node, name in ((a, "a"), (b, "b")):
        addresses = [addr for s in nodes[name]["services"] for addr in s["addresses"]]
        assert f"127.0.0.1:{node.port}" in addresses and f"[::1]:{node.port}" in addresses
        assert {"ssh", "https"} <= {s["type"] for s in nodes[name]["services"]}
        assert nodes[name]["version"] and nodes[name]["sessions_open"] == 0
    # The human table names both, up, with their addresses.
    table = a.wharf("cluster", "status", check=True).stdout
    assert f"127.0.0.1:{a.port}" in table and f"127.0.0.1:{b.port}" in table
    assert [line.split()[:2] for line in table.splitlines()[1:]] == [["a", "up"], ["b", "up"]]

    # A connection open on a node is counted by its next heartbeat.
    held = socket.create_connection(("127.0.0.1", a.port), timeout=5)
    try:
        deadline = time.time() + 10
        while status(b)["a"]["sessions_open"] != 1:
            assert time.time() < deadline, status(b)
            time.sleep(0.3)
    finally:
        held.close()

    # A second live node named "a": refused at once, naming the live one.
    started = time.time()
    refused = serve_once(twin)
    assert refused.returncode != 0
    assert time.time() - started < 30
    assert 'node name "a" is held by a live node' in refused.stderr, refused.stderr
    assert f"127.0.0.1:{a.port}" in refused.stderr and "last seen" in refused.stderr
    assert status(b)["a"]["pid"] == a.proc.pid

    # kill -9: shown down after the timeout, b stays up; then "a" starts again.
    a.proc.kill()
    a.proc.wait()
    killed = time.time()
    nodes = wait_state(b, "a", "down", timeout=TIMEOUT + 10)
    assert time.time() - killed >= TIMEOUT - HEARTBEAT
    assert nodes["b"]["state"] == "up"
    assert "down" in b.wharf("cluster", "status", check=True).stdout
    a.start()
    nodes = wait_state(b, "a", "up")
    assert nodes["a"]["pid"] == a.proc.pid

    # A clean stop frees the name at once: the twin may take it now.
    a.stop()
    assert status(b)["a"]["state"] == "stopped"
    twin.start()
    assert status(b)["a"]["pid"] == twin.proc.pid


def test_postgres_unreachable_at_start_names_host_and_port_not_the_password(cluster):
    node = cluster.node("lonely")
    port = free_port()
    config = node.root / "wharf.toml"
    text = config.read_text()
    url = next(line for line in text.splitlines() if line.startswith("url = "))
    unreachable = url.rsplit("@", 1)[0] + f'@127.0.0.1:{port}/wharf"'
    text = text.replace(url, unreachable + '\npassword = "env:WHARF_TEST_STORE_PASSWORD"')
    config.write_text(text)
    secret = "s3cret-never-printed"

    started = time.time()
    result = serve_once(node, env={"WHARF_TEST_STORE_PASSWORD": secret})
    assert result.returncode != 0
    assert time.time() - started < 30
    output = result.stdout + result.stderr
    assert secret not in output
    errors = [line for line in output.splitlines() if f"127.0.0.1:{port}" in line]
    assert len(errors) == 1, output
    assert "cannot reach the PostgreSQL store" in errors[0], output
    assert "refused" in errors[0].lower(), output


def ftps_login(node, user, password):
    client = node.ftp_client("ftps", user, password)
    client.quit()


def test_postgres_restarting_while_serving_fails_logins_closed_until_it_is_back(cluster, postgres):
    a = cluster.node("a")
    short_heartbeat(a)
    a.add_account("alice", password="correct horse battery")
    a.start()
    ftps_login(a, "alice", "correct horse battery")

    postgres.pause()
    try:
        started = time.time()
        with pytest.raises(ftplib.error_perm) as refused:
            ftps_login(a, "alice", "correct horse battery")
        # Fails, does not hang: the store's connect timeout (5 s) and FTP's pause after a
        # failed login, with room for a loaded machine.
        assert time.time() - started < 20
        assert str(refused.value).startswith("530")
        deadline = time.time() + 10
        while "login refused: store unreachable" not in a.log.read_text():
            assert time.time() < deadline, a.log.read_text()
            time.sleep(0.2)
    finally:
        postgres.resume()

    # Back without restarting the node.
    deadline = time.time() + 20
    while True:
        try:
            ftps_login(a, "alice", "correct horse battery")
            break
        except (ftplib.error_perm, ftplib.error_temp, OSError):
            assert time.time() < deadline, a.log.read_text()
            time.sleep(0.5)
    assert a.proc.poll() is None
    outage = a.wait_event("store.unreachable", timeout=15)
    assert outage["node"] == "a" and outage["outcome"] != "ok"
    assert int(outage["attrs"]["seconds"]) >= 1


def test_a_login_refused_while_the_store_was_down_is_in_the_trail_once_back(cluster, postgres):
    a = cluster.node("a")
    a.add_account("alice", password="correct horse battery")
    a.start()
    postgres.pause()
    try:
        with pytest.raises(ftplib.error_perm):
            ftps_login(a, "alice", "correct horse battery")
        # Longer than the store's connect timeout: the writer's first try fails too.
        time.sleep(7)
    finally:
        postgres.resume()
    failed = a.wait_event("login.failed", timeout=20, account="alice")
    assert failed["attrs"]["cause"] == "store"
    assert failed["message"].startswith("store unreachable")
