"""The Manager's Prometheus endpoint, scraped after real transfers and read by Prometheus's
own text-format parser (prometheus_client)."""

import ftplib
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_manager import add_admin, token

PASSWORD = "metrics-test-password-1"


def scrape(server, bearer=None):
    url = f"https://127.0.0.1:{server.manager_port}/api/v1/metrics"
    cmd = ["curl", "-sSk", "-w", "\n%{http_code}", url]
    if bearer:
        cmd += ["-H", f"Authorization: Bearer {bearer}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    body, _, status = out.rpartition("\n")
    return int(status), body


def samples(text):
    """{(name, frozenset(labels)): value} of every sample."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())), 0)


def test_the_metrics_show_the_transfers_just_made(server):
    home = server.add_account("alice", password=PASSWORD)
    add_admin(server, "aude", "auditor")
    bearer = token(server, "prometheus", "aude", "auditor")
    server.start()
    data = server.root / "data.bin"
    data.write_bytes(b"m" * 300_000)
    server.sftp("alice", f"put {data} up.bin\nget up.bin {server.root / 'back.bin'}\n")
    subprocess.run(["curl", "-sSk", "-u", f"alice:{PASSWORD}", "-T", str(data),
                    f"https://127.0.0.1:{server.https_port}/api/v1/files/web.bin"],
                   check=True, capture_output=True, timeout=30)
    with pytest.raises(ftplib.error_perm):
        server.ftp_client("ftps", "alice", "not the password")
    server.wait_event("upload.finished", path="/web.bin")
    server.wait_event("login.failed", protocol="ftps")

    # No token, no metrics; the file services do not serve them.
    assert scrape(server)[0] == 401
    web = subprocess.run(["curl", "-sSk", "-o", "/dev/null", "-w", "%{http_code}",
                          f"https://127.0.0.1:{server.https_port}/api/v1/metrics"],
                         capture_output=True, text=True, timeout=30).stdout
    assert web in ("401", "404"), web

    status, text = scrape(server, bearer)
    assert status == 200, text
    found = samples(text)
    assert value(found, "wharf_logins_total", protocol="ssh", outcome="success") >= 1
    assert value(found, "wharf_logins_total", protocol="https", outcome="success") >= 1
    assert value(found, "wharf_logins_total", protocol="ftps", outcome="failure") >= 1
    assert value(found, "wharf_bytes_total", protocol="sftp", direction="upload") == 300_000
    assert value(found, "wharf_bytes_total", protocol="sftp", direction="download") == 300_000
    assert value(found, "wharf_bytes_total", protocol="https", direction="upload") == 300_000
    assert value(found, "wharf_transfers_total", protocol="sftp", direction="upload",
                 outcome="success") == 1
    assert value(found, "wharf_transfer_duration_seconds_count", protocol="sftp",
                 direction="upload") == 1
    assert value(found, "wharf_transfer_duration_seconds_bucket", protocol="sftp",
                 direction="upload", le="+Inf") == 1
    assert value(found, "wharf_transfers_in_flight", direction="upload") == 0
    assert value(found, "wharf_connections_total", protocol="ssh") >= 1
    assert ("wharf_handler_jobs", frozenset({("state", "queued")})) in found
    assert ("wharf_bans", frozenset()) in found
    assert value(found, "wharf_store_write_seconds_count") >= 1
    # Labels are bounded sets: no account, path or address appears.
    assert "alice" not in text and "up.bin" not in text and "127.0.0.1" not in text
