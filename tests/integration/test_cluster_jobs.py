"""Handler jobs of a cluster: any node runs any job, for a lease, and each runs once.

Two `wharf serve` nodes share one PostgreSQL store and one storage folder. The handler is a
program (`exec`) slow enough to be caught running: it notes that it started, sleeps, then
appends one line (its node and the upload's record number) to a file on the shared storage.
That file is the countable effect: each upload must leave exactly one line, whichever node
ran it, whatever node died."""

import signal
import time

from conftest import WharfServer

PASSWORD = "cluster-jobs-password-1"
LEASE = 3

PROGRAM = """#!/bin/sh
# NODE SEQ SECONDS: note the start, work a while, then leave the effect.
echo "$1 $2 $(date +%s.%N)" >> {started}
sleep "$3"
echo "$1 $2" >> {effects}
"""


def configure(node: WharfServer, name: str, program, concurrency: int, seconds: int):
    with open(node.root / "wharf.toml", "a") as f:
        f.write(f"""
[handlers]
lease = {LEASE}
concurrency = {concurrency}

[[handler]]
name = "count"
on = ["upload.finished"]
attempts = 1

[handler.exec]
program = "{program}"
args = ["{name}", "${{SEQ}}", "{seconds}"]
""")


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def setup(cluster, tmp_path, concurrency, seconds):
    started, effects = tmp_path / "started.txt", tmp_path / "effects.txt"
    program = tmp_path / "count.sh"
    program.write_text(PROGRAM.format(started=started, effects=effects))
    program.chmod(0o755)
    a = cluster.node("a")
    b = cluster.node("b")
    for node in (a, b):
        configure(node, node.root.name, program, concurrency, seconds)
    a.add_account("alice", password=PASSWORD)
    return a, b, started, effects


def upload(node, tmp_path, count):
    script = ""
    for i in range(count):
        local = tmp_path / f"f{i}.txt"
        local.write_text(f"file {i}\n")
        script += f"put {local} f{i}.txt\n"
    node.sftp("alice", script)


def jobs(cluster):
    rows = cluster.psql("SELECT event_seq, state, owner, claims FROM handler_jobs ORDER BY event_seq")
    return [tuple(row.split("|")) for row in rows.splitlines()]


def test_jobs_of_a_killed_node_run_once_on_another_after_the_lease(cluster, tmp_path):
    a, b, started, effects = setup(cluster, tmp_path, concurrency=8, seconds=4)
    a.start()
    upload(a, tmp_path, 3)
    # a holds all three, each program in its sleep: kill a there.
    wait_for(lambda: len(lines(started)) == 3, 20, "a to start the three jobs")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    killed = time.time()
    seqs = sorted((line.split()[1] for line in lines(started)), key=int)
    assert all(line.startswith("a ") for line in lines(started))

    b.start()
    wait_for(lambda: len(lines(effects)) == 3, 30, "b to run the three jobs")
    wait_for(lambda: all(j[1] == "done" for j in jobs(cluster)), 10, "the jobs to end")
    # a's programs died with a (they would have written by now): one line per upload, b's.
    assert sorted(lines(effects)) == sorted(f"b {seq}" for seq in seqs)
    # b waited for a's lease (renewed every second while a lived) to run out before taking
    # the jobs over; it did not take them from a when it started.
    taken = [float(line.split()[2]) for line in lines(started) if line.startswith("b ")]
    assert len(taken) == 3
    assert min(taken) >= killed + LEASE - 1.5, (min(taken) - killed, lines(started))
    # Each job was claimed twice (a, then b) and ended once, by b; one outcome each.
    assert jobs(cluster) == [(seq, "done", "b", "2") for seq in seqs]
    ran = [e for e in b.events() if e["name"] == "program.ran"]
    assert sorted((e["attrs"]["trigger"] for e in ran), key=int) == seqs
    assert {e["node"] for e in ran} == {"b"}


def test_two_live_nodes_share_the_jobs_and_run_each_once(cluster, tmp_path):
    # Each program runs longer than the lease: only renewals keep a job its node's.
    a, b, started, effects = setup(cluster, tmp_path, concurrency=2, seconds=LEASE + 2)
    a.start()
    b.start()
    upload(a, tmp_path, 6)
    wait_for(lambda: len(lines(effects)) == 6, 40, "six effects")
    wait_for(lambda: all(j[1] == "done" for j in jobs(cluster)) and len(jobs(cluster)) == 6, 10,
             "the jobs to end")
    done = lines(effects)
    seqs = sorted((line.split()[1] for line in done), key=int)
    assert len(set(seqs)) == 6, done
    # None started twice (no live node's job was taken over) and both nodes ran some.
    assert sorted((line.split()[1] for line in lines(started)), key=int) == seqs
    assert {line.split()[0] for line in done} == {"a", "b"}, done
    assert [(j[0], j[1], j[3]) for j in jobs(cluster)] == [(seq, "done", "1") for seq in seqs]
    owners = {j[0]: j[2] for j in jobs(cluster)}
    assert owners == {line.split()[1]: line.split()[0] for line in done}


def test_check_config_refuses_a_lease_or_concurrency_out_of_range(server):
    with open(server.root / "wharf.toml", "a") as f:
        f.write("\n[handlers]\nlease = 1\nconcurrency = 0\n")
    out = server.wharf("check-config")
    assert out.returncode == 1
    assert "handlers.lease" in out.stderr and "2 to 3600 seconds" in out.stderr, out.stderr
    assert "handlers.concurrency" in out.stderr, out.stderr
    assert "wharf.toml:" in out.stderr, out.stderr
