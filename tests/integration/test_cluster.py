"""Several `wharf serve` nodes on one PostgreSQL store (a throwaway server per test worker).

What one node writes to the store, every node reads: an account made through node A logs in
on node B, and both nodes' records land in the one audit trail, each naming its node."""

from conftest import sha256


def test_an_account_made_on_a_logs_in_on_b(cluster, tmp_path):
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_account("alice", password="correct horse battery")
    a.start()
    b.start()

    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"shared storage, shared accounts\n" * 100)
    b.sftp("alice", f"put {payload} from-b.bin\n")
    a.sftp("alice", f"get from-b.bin {tmp_path / 'back.bin'}\n")
    assert sha256(tmp_path / "back.bin") == sha256(payload)

    # The record of the upload is B's, the record of the download A's, in the one trail
    # that either node's `wharf events` reads.
    uploaded = a.wait_event("upload.finished", account="alice")
    downloaded = b.wait_event("download.finished", account="alice")
    assert uploaded["node"] == "b"
    assert downloaded["node"] == "a"
    assert cluster.psql("SELECT count(*) FROM accounts WHERE name = 'alice'") == "1"


def test_a_second_node_init_changes_nothing_shared(cluster):
    a = cluster.node("a")
    groups_before = cluster.psql("SELECT name, home_template FROM groups")
    b = cluster.node("b")
    # The administrator was made once, by the first node, and its password printed there.
    assert "Password (shown once" in a.admin_output
    assert "Password (shown once" not in b.admin_output
    assert cluster.psql("SELECT count(*) FROM admins") == "1"
    assert cluster.psql("SELECT name, home_template FROM groups") == groups_before
