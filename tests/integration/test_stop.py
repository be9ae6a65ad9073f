"""A server that stops cuts the connections still open after a grace period, and records
each one's end: the trail has an end for every connection it has a beginning for."""

import os
import signal
import time


def test_a_stop_records_the_end_of_every_cut_connection(server):
    server.add_account("alice", password="correct horse battery")
    server.start()
    client = server.paramiko("alice")
    sftp = client.open_sftp()
    remote = sftp.open("unfinished.bin", "wb")
    remote.write(os.urandom(256 * 1024))
    remote.flush()
    server.wait_event("upload.started", account="alice")

    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=30)
    took = time.monotonic() - began
    client.close()
    assert server.proc.returncode == 0
    assert took < 15, took

    events = server.events()
    opened = {e["session"] for e in events if e["name"] == "connection.opened" and e.get("protocol") == "ssh"}
    closed = {e["session"]: e for e in events if e["name"] == "connection.closed" and e.get("protocol") == "ssh"}
    assert opened and opened <= set(closed), (opened, closed)
    cut = [e for e in closed.values() if e.get("message") == "cut: the server stopped"]
    assert cut and cut[0]["account"] == "alice", closed
    assert cut[0]["outcome"] == "failure", cut
    names = [e["name"] for e in events if e.get("account") == "alice"]
    assert "upload.failed" in names and "session.ended" in names, names
    assert names.index("upload.failed") < names.index("session.ended"), names
    assert any(e["name"] == "server.stopped" for e in events)
    assert not (server.homes / "alice" / "unfinished.bin").exists()


def test_an_ftps_upload_cut_by_a_stop_is_recorded_and_leaves_nothing(server):
    server.add_account("bob", password="correct horse battery")
    server.start()
    ftps = server.ftp_client("ftps", "bob", "correct horse battery")
    data = ftps.transfercmd("STOR half.bin")
    data.sendall(os.urandom(256 * 1024))
    server.wait_event("upload.started", account="bob")
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=30)
    data.close()

    events = server.events()
    names = [e["name"] for e in events if e.get("account") == "bob"]
    assert "upload.failed" in names and "session.ended" in names, names
    closed = [e for e in events if e["name"] == "connection.closed" and e.get("service") == "ftp"]
    assert any(e.get("message") == "cut: the server stopped" and e.get("account") == "bob"
               and e.get("protocol") == "ftps" for e in closed), closed
    assert any(e.get("message") == "cut: the server stopped" and e.get("account") == "bob"
               for e in closed), closed
    assert not (server.homes / "bob" / "half.bin").exists()
