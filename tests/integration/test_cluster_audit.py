"""The audit trail of a cluster: every node keeps its own hash chain in the one PostgreSQL
store, `wharf events` merges the nodes' records in time order naming each node, `wharf audit
verify` checks and reports every node's chain, and a PostgreSQL stop under load loses no
record (the records wait in memory, then in the node's spill file, and continue the chain
once the store is back)."""

import io
import threading
import time

import paramiko

PASSWORD = "correct horse battery"


def sftp_session(node, user="alice"):
    """A logged-in paramiko SFTP session on `node` (the store is read at login only)."""
    transport = paramiko.Transport(("127.0.0.1", node.port))
    transport.connect(username=user, password=PASSWORD)
    return transport, paramiko.SFTPClient.from_transport(transport)


def upload_many(node, prefix, count, errors):
    """`count` small uploads over SFTP on `node`, and as many over FTPS, at once."""
    def over_sftp():
        try:
            transport, sftp = sftp_session(node)
            for i in range(count):
                sftp.putfo(io.BytesIO(f"{prefix} sftp {i}\n".encode()), f"{prefix}-sftp-{i}.txt")
            transport.close()
        except Exception as e:  # noqa: BLE001 (reported by the test)
            errors.append(f"{prefix} sftp: {e!r}")

    def over_ftps():
        try:
            client = node.ftp_client("ftps", "alice", PASSWORD)
            for i in range(count):
                client.storbinary(f"STOR {prefix}-ftp-{i}.txt", io.BytesIO(f"{prefix} ftp {i}\n".encode()))
            client.quit()
        except Exception as e:  # noqa: BLE001
            errors.append(f"{prefix} ftp: {e!r}")

    return [threading.Thread(target=over_sftp), threading.Thread(target=over_ftps)]


def two_nodes(cluster):
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_account("alice", password=PASSWORD)
    a.start()
    b.start()
    return a, b


def uploads_recorded(cluster, node):
    return int(cluster.psql(
        f"SELECT count(*) FROM events WHERE node = '{node}' AND name = 'upload.finished' AND record_json LIKE '%\"outcome\":\"success\"%'"))


def test_each_node_keeps_its_chain_and_the_trail_merges_them(cluster):
    a, b = two_nodes(cluster)
    errors = []
    threads = upload_many(a, "on-a", 8, errors) + upload_many(b, "on-b", 8, errors)
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    deadline = time.time() + 15
    while time.time() < deadline and (uploads_recorded(cluster, "a") < 16 or uploads_recorded(cluster, "b") < 16):
        time.sleep(0.2)

    # Either node's `wharf events` shows both nodes' records, merged in time order.
    for reader in (a, b):
        records = reader.events()
        uploads = [r for r in records if r["name"] == "upload.finished"]
        assert {r["node"] for r in uploads} == {"a", "b"}
        assert sorted(r["path"] for r in uploads if r["node"] == "a") == sorted(
            [f"/on-a-sftp-{i}.txt" for i in range(8)] + [f"/on-a-ftp-{i}.txt" for i in range(8)])
        assert [r["time"] for r in records] == sorted(r["time"] for r in records)
        # Each node's records are numbered gap-free in its own chain (in the order its
        # writer took them, which two sessions' records need not share with their times).
        for node in ("a", "b"):
            mine = sorted(r["node_seq"] for r in records if r["node"] == node)
            assert mine == list(range(1, len(mine) + 1)), node
    human = a.wharf("events", "--limit", "1000", check=True).stdout.splitlines()
    assert {line.split()[2] for line in human} == {"a", "b"}
    only_b = b.wharf("events", "--node", "b", "--limit", "1000", check=True).stdout.splitlines()
    assert only_b and {line.split()[2] for line in only_b} == {"b"}

    ok = b.wharf("audit", "verify")
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert any(l.startswith("node a: ") and "intact" in l for l in lines), ok.stdout
    assert any(l.startswith("node b: ") and "intact, the same in the store and" in l for l in lines), ok.stdout

    # A record of b changed by hand: b's chain is named broken at that record, a's is intact.
    victim = int(cluster.psql(
        "SELECT min(node_seq) FROM events WHERE node = 'b' AND name = 'upload.finished'"))
    cluster.psql(
        f"UPDATE events SET record_json = replace(record_json, '/on-b-', '/elsewhere-') WHERE node = 'b' AND node_seq = {victim}")
    for reader in (a, b):
        broken = reader.wharf("audit", "verify")
        assert broken.returncode == 1, broken.stdout
        assert f"node b: audit trail broken at record {victim}: content does not match its hash" in broken.stderr
        assert any(l.startswith("node a: ") and "intact" in l for l in broken.stdout.splitlines()), broken.stdout
        assert "node a" not in broken.stderr


def test_a_store_outage_under_load_loses_no_record(cluster, postgres):
    a, b = two_nodes(cluster)
    sessions = {node: sftp_session(node) for node in (a, b)}
    done = {a: [], b: []}
    failed = {a: [], b: []}
    stop = threading.Event()
    during = []

    def keep_uploading(node):
        transport, sftp = sessions[node]
        i = 0
        while not stop.is_set():
            name = f"{node.root.name}-{i}.txt"
            i += 1
            try:
                sftp.putfo(io.BytesIO(f"{name}\n".encode()), name)
                done[node].append("/" + name)
                if paused.is_set():
                    during.append(name)
            except Exception as e:  # noqa: BLE001 (an upload refused is allowed; one lost is not)
                failed[node].append(f"{name}: {e!r}")
                time.sleep(0.2)
        transport.close()

    paused = threading.Event()
    workers = [threading.Thread(target=keep_uploading, args=(n,)) for n in (a, b)]
    for w in workers:
        w.start()
    try:
        time.sleep(1)
        postgres.pause()
        paused.set()
        # Longer than the writer's wait for the store (3 s) before it spills, with room
        # for a loaded machine: uploads must finish within the outage, not only after it.
        time.sleep(7)
    finally:
        paused.clear()
        postgres.resume()
    time.sleep(1.5)
    stop.set()
    for w in workers:
        w.join(timeout=60)

    # Uploads went on while the store was away: their records were spilled and confirmed.
    assert during, (failed, (a.root / "serve.log").read_text()[-3000:])
    assert "spilled" in (a.root / "serve.log").read_text() + (b.root / "serve.log").read_text()
    # Every upload a client was told is stored has its record, on the node that took it.
    for node in (a, b):
        name = node.root.name
        deadline = time.time() + 30
        while time.time() < deadline:
            recorded = cluster.psql(
                f"SELECT record_json::json->>'path' FROM events WHERE node = '{name}' AND name = 'upload.finished' "
                "AND record_json::json->>'outcome' = 'success' ORDER BY node_seq").split()
            if len(recorded) >= len(done[node]) and not (node.root / "wharf-data" / "audit-spill.jsonl").exists():
                break
            time.sleep(0.3)
        assert sorted(recorded) == sorted(done[node]), (name, len(recorded), len(done[node]))
        assert len(recorded) == len(set(recorded)), "a record was written twice"
    ok = a.wharf("audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "node a: " in ok.stdout and "node b: " in ok.stdout, ok.stdout
    assert b.wharf("audit", "verify").returncode == 0


def test_an_upload_whose_record_cannot_be_kept_is_refused(cluster, postgres):
    """Neither the store (stopped) nor the spill file (its name taken by a folder) takes the
    record: the upload is answered with an error, the next one is refused before it starts,
    and once the store is back the records are written and uploads work again. (Over FTPS:
    paramiko ignores an error answering the close of an SFTP upload.)"""
    import ftplib
    a = cluster.node("a")
    a.add_account("alice", password=PASSWORD)
    a.start()
    client = a.ftp_client("ftps", "alice", PASSWORD)
    client.storbinary("STOR before.txt", io.BytesIO(b"before\n"))
    spill = a.root / "wharf-data" / "audit-spill.jsonl"
    spill.mkdir()
    refused = []
    try:
        postgres.pause()
        for name in ("during-1.txt", "during-2.txt"):
            try:
                client.storbinary(f"STOR {name}", io.BytesIO(b"during\n"))
            except ftplib.Error as e:
                refused.append((name, str(e)))
    finally:
        postgres.resume()
        spill.rmdir()
    assert [n for n, _ in refused] == ["during-1.txt", "during-2.txt"], refused
    assert "audit record could not be made durable" in refused[0][1], refused
    assert "audit trail cannot record it now" in refused[1][1], refused
    log = (a.root / "serve.log").read_text()
    assert "cannot spill audit records either" in log, log[-3000:]
    # The store is back: the records kept in memory reach it, and uploads are answered again.
    deadline = time.time() + 20
    while True:
        try:
            client.storbinary("STOR after.txt", io.BytesIO(b"after\n"))
            break
        except ftplib.Error:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    client.quit()
    a.wait_event("upload.finished", path="/after.txt", timeout=20)
    finished = [e["path"] for e in a.events() if e["name"] == "upload.finished"]
    assert "/during-1.txt" in finished, finished
    ok = a.wharf("audit", "verify")
    assert ok.returncode == 0, ok.stderr
