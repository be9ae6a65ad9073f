"""Bans in a cluster: every node's failures add up in the store, so an attacker spreading its
attempts over three nodes is banned at the same threshold as on one, and a ban, or its
removal by an administrator, is enforced by every node within 2 seconds.

The attacker connects from its own loopback address (127.0.0.77), so the nodes' own
connections from 127.0.0.1 are never banned."""

import ftplib
import time

import pytest

from raw_sockets import first_bytes

PASSWORD = "correct horse battery staple"
ATTACKER = "127.0.0.77"
THRESHOLD = 3


def configure(node):
    node.add_ftp_service()
    with open(node.root / "wharf.toml", "a") as f:
        f.write(f"\n[ban]\nthreshold = {THRESHOLD}\nwindow = 120\nban_time = 600\n")


def ftp_login(node, password):
    c = ftplib.FTP()
    c.connect("127.0.0.1", node.ftp_port, timeout=15,
              source_address=(ATTACKER, 0))
    try:
        c.login("alice", password)
    finally:
        c.close()


def wrong_password(node):
    with pytest.raises(ftplib.error_perm, match="530"):
        ftp_login(node, "wrong")


def refused(node):
    """The attacker's next connections: FTP answers 421, SSH closes before its banner."""
    return (first_bytes("127.0.0.1", node.ftp_port, source=ATTACKER).startswith(b"421")
            and first_bytes("127.0.0.1", node.port, source=ATTACKER) == b"")


def served(node):
    return (first_bytes("127.0.0.1", node.ftp_port, source=ATTACKER).startswith(b"220")
            and first_bytes("127.0.0.1", node.port, source=ATTACKER).startswith(b"SSH-2.0-"))


def within(seconds, condition, what):
    """Waits until `condition()` holds; fails when that takes more than `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"{what}: not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_failures_spread_over_three_nodes_ban_on_all_and_a_removal_reaches_all(cluster):
    nodes = [cluster.node(name) for name in ("a", "b", "c")]
    a, b, c = nodes
    for node in nodes:
        configure(node)
    a.add_account("alice", password=PASSWORD, key=False)
    for node in nodes:
        node.start()

    # One wrong password on each node: fewer than the threshold on every node, the
    # threshold in total. Before the last one, nobody is banned.
    wrong_password(a)
    wrong_password(b)
    time.sleep(0.3)
    assert all(served(node) for node in nodes)
    wrong_password(c)
    for node in nodes:
        within(2, lambda: refused(node), f"the ban on {node.root.name}")

    # One ban in the store and one ban.added in the trail, by the node whose failure
    # crossed the threshold; the others enforce it without recording it again.
    assert cluster.psql("SELECT node FROM bans WHERE lifted = 0") == "c"
    added = a.wait_event("ban.added")
    assert added["node"] == "c" and added["attrs"]["network"] == f"{ATTACKER}/32"
    assert added["attrs"]["score"] == str(THRESHOLD)
    time.sleep(1.5)
    assert [e["node"] for e in a.events() if e["name"] == "ban.added"] == ["c"]

    # An administrator lifts it on a: every node serves the address again within 2 s, and
    # the account logs in from it on b.
    a.wharf("ban", "remove", ATTACKER, check=True)
    for node in (b, c, a):
        within(2, lambda: served(node), f"the lift on {node.root.name}")
    ftp_login(b, PASSWORD)

    # A ban set by hand on b reaches a within 2 s too.
    b.wharf("ban", "add", ATTACKER, "--seconds", "60", check=True)
    within(2, lambda: refused(a), "an administrator's ban on a")
    assert a.wait_event("ban.set")["attrs"]["network"] == f"{ATTACKER}/32"
