#!/usr/bin/env python3
"""Event search at scale: how long the Manager's admin API takes to answer the first page of
every filter combination on a trail of millions of records, on SQLite and on PostgreSQL.

    python3 bench/events_scale.py --records 10000000 --backend sqlite
    python3 bench/events_scale.py --records 10000000 --backend postgres

It makes a node with `wharf init` (PostgreSQL: a throwaway server from
scripts/throwaway-postgres), fills its store's `events` table with a year of synthetic
records (one node writing 70 %, another 30 %; 10 busy accounts holding 3 % each and 10,000
others; SFTP, FTP, HTTPS, WebDAV and SCP; the event mix of a file server, 4 % failures),
starts `wharf serve`, and asks `GET /api/v1/events` (limit 100) for every combination of:
since (none, 30d) × id (none, 20011, 30000-30099) × account (none, busy, quiet) ×
protocol (none, scp) × outcome (none, failure) × node (none, wharf-2) × paging (first
page, the page before the middle record). Each is asked 3 times; the median of curl's
total time (TLS handshake on loopback included) is reported, with the slowest combinations.
The records are not hash-chained: this measures search, not `wharf audit verify`.

Needs the release binary (cargo build --release) and, for PostgreSQL, its server package.
Not a test: it asserts nothing and takes minutes (most of it filling the trail).
"""

import argparse
import itertools
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "wharf"
YEAR_US = 365 * 86400 * 1_000_000

# (id, name, outcome, weight out of 100)
KINDS = [
    (20001, "connection.opened", "success", 10),
    (20002, "connection.closed", "success", 10),
    (20010, "login.succeeded", "success", 9),
    (20011, "login.failed", "failure", 3),
    (20020, "session.started", "success", 9),
    (20021, "session.ended", "success", 9),
    (30001, "upload.started", "success", 12),
    (30002, "upload.finished", "success", 11),
    (30003, "upload.failed", "failure", 1),
    (30010, "download.started", "success", 8),
    (30011, "download.finished", "success", 8),
    (30027, "folder.listed", "success", 8),
    (30020, "file.deleted", "success", 2),
]

# Pseudo-random but reproducible columns of record `seq`, the same in both SQL dialects.
COLUMNS = {
    "bucket": "((seq * 2654435761) % 1000003) % 100",
    "protocol": "CASE WHEN ((seq * 40503) % 1000033) % 20 < 10 THEN 'sftp' "
                "WHEN ((seq * 40503) % 1000033) % 20 < 14 THEN 'ftp' "
                "WHEN ((seq * 40503) % 1000033) % 20 < 17 THEN 'https' "
                "WHEN ((seq * 40503) % 1000033) % 20 < 19 THEN 'webdav' ELSE 'scp' END",
    "node": "CASE WHEN ((seq * 69069) % 1000037) % 10 < 7 THEN 'wharf-1' ELSE 'wharf-2' END",
    "account": "CASE WHEN ((seq * 48271) % 2147483647) % 100 < 30 "
               "THEN 'busy' || (((seq * 48271) % 2147483647) % 10) "
               "ELSE 'user' || (((seq * 16807) % 2147483647) % 10000) END",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kinds_rows():
    rows, bucket = [], 0
    for kid, name, outcome, weight in KINDS:
        for _ in range(weight):
            rows.append((bucket, kid, name, outcome))
            bucket += 1
    assert bucket == 100
    return rows


def fill_sql(n, start_us, step_us, dialect):
    """One INSERT … SELECT making `n` records."""
    if dialect == "sqlite":
        series = f"WITH RECURSIVE s(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM s WHERE seq < {n})"
        source = "s"
        time_text = "strftime('%Y-%m-%dT%H:%M:%fZ', t.time_us / 1000000.0, 'unixepoch')"
        json = "json_object"
    else:
        series = ""
        source = f"generate_series(1::bigint, {n}) AS s(seq)"
        time_text = "to_char(to_timestamp(t.time_us / 1000000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        json = "json_build_object"
    cols = ", ".join(f"{expr} AS {name}" for name, expr in COLUMNS.items())
    return f"""{series}
INSERT INTO events (seq, id, name, time_us, account, record_json, prev, hash, node, node_seq, protocol, outcome)
SELECT t.seq, k.id, k.name, t.time_us, t.account,
       {json}('seq', t.seq, 'id', k.id, 'name', k.name, 'time', {time_text}, 'node', t.node,
              'service', t.protocol, 'protocol', t.protocol, 'account', t.account,
              'remote', '203.0.113.' || (t.seq % 250) || ':5' || (t.seq % 9999),
              'path', '/in/batch-' || (t.seq % 977) || '/file-' || t.seq || '.csv',
              'outcome', k.outcome, 'prev', '')::text,
       '', '', t.node, t.seq, t.protocol, k.outcome
FROM (SELECT seq, {start_us} + seq * {step_us} AS time_us, {cols} FROM {source}) AS t
JOIN bench_kinds k ON k.bucket = t.bucket"""


INDEX_RE = re.compile(r"CREATE INDEX (events_\w+) .*?;", re.S)


def event_indexes(dialect):
    """The `CREATE INDEX` statements of the events table, as the migrations leave them."""
    text = (ROOT / "crates/wharf-store/src/migrations" / dialect / "0015_event_search.sql").read_text()
    return [m.group(0) for m in INDEX_RE.finditer(text)]


def fill_sqlite(db, n):
    start_us = int(time.time() * 1e6) - YEAR_US
    step = YEAR_US // n
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    indexes = event_indexes("sqlite")
    for stmt in indexes:
        con.execute(f"DROP INDEX IF EXISTS {stmt.split()[2]}")
    con.execute("CREATE TEMP TABLE bench_kinds (bucket INTEGER PRIMARY KEY, id INTEGER, name TEXT, outcome TEXT)")
    con.executemany("INSERT INTO bench_kinds VALUES (?, ?, ?, ?)", kinds_rows())
    con.execute("DELETE FROM events")
    con.execute(fill_sql(n, start_us, step, "sqlite").replace("::text", ""))
    con.commit()
    for stmt in indexes:
        con.execute(stmt)
    con.commit()
    con.execute("ANALYZE")
    con.commit()
    con.close()


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True)


def fill_postgres(url, n):
    start_us = int(time.time() * 1e6) - YEAR_US
    step = YEAR_US // n
    indexes = event_indexes("postgres")
    for stmt in indexes:
        psql(url, f"DROP INDEX IF EXISTS {stmt.split()[2]}")
    values = ", ".join(f"({b}, {i}, '{nm}', '{o}')" for b, i, nm, o in kinds_rows())
    psql(url, "DELETE FROM events")
    psql(url, "CREATE TABLE bench_kinds (bucket INT PRIMARY KEY, id BIGINT, name TEXT, outcome TEXT);"
              f"INSERT INTO bench_kinds VALUES {values}")
    # `seq` is an identity column: the bench gives its own numbers.
    psql(url, "SET synchronous_commit = off; " + fill_sql(n, start_us, step, "postgres").replace(
        "\nSELECT t.seq", " OVERRIDING SYSTEM VALUE\nSELECT t.seq"))
    psql(url, f"SELECT setval(pg_get_serial_sequence('events', 'seq'), {n})")
    for stmt in indexes:
        psql(url, "SET maintenance_work_mem = '512MB'; " + stmt)
    psql(url, "DROP TABLE bench_kinds")
    psql(url, "VACUUM ANALYZE events")


def combos(n):
    dims = [
        ("since", [None, "30d"]),
        ("id", [None, "20011", "30000-30099"]),
        ("account", [None, "busy3", "user42"]),
        ("protocol", [None, "scp"]),
        ("outcome", [None, "failure"]),
        ("node", [None, "wharf-2"]),
        ("before", [None, str(n // 2)]),
    ]
    for values in itertools.product(*(v for _, v in dims)):
        yield {k: v for (k, _), v in zip(dims, values) if v is not None}


def ask(port, token, query):
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    out = subprocess.run(
        ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
         "-H", f"Authorization: Bearer {token}",
         f"https://127.0.0.1:{port}/api/v1/events?limit=100&{qs}"],
        capture_output=True, text=True, timeout=120).stdout.split()
    if out[0] != "200":
        raise SystemExit(f"HTTP {out[0]} for {qs}")
    return float(out[1]) * 1000


def count(port, token, query):
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    body = subprocess.run(
        ["curl", "-sk", "-H", f"Authorization: Bearer {token}",
         f"https://127.0.0.1:{port}/api/v1/events?limit=100&{qs}"],
        capture_output=True, text=True, timeout=120).stdout
    return body.count('"seq":')


def run(backend, n, workdir):
    node = workdir / backend
    pg_dir = None
    init = [str(BIN), "init", str(node)]
    if backend == "postgres":
        pg_port = free_port()
        pg_dir = f"/tmp/wharf-bench-pg-{pg_port}"
        base = subprocess.run([str(ROOT / "scripts/throwaway-postgres"), pg_dir, str(pg_port), str(os.getpid())],
                              capture_output=True, text=True, check=True).stdout.strip()
        psql(f"{base}/postgres", "CREATE DATABASE bench")
        url = f"{base}/bench"
        init += ["--store", url]
    subprocess.run(init, check=True, capture_output=True)
    config = node / "wharf.toml"
    port = free_port()
    text = config.read_text().replace('address = "::"', 'address = "127.0.0.1"')
    text = text.replace("port = 9443", f"port = {port}")
    for p in (2222, 2121, 2990, 8443):
        text = text.replace(f"port = {p}", f"port = {free_port()}")
    # Every request is a new connection from one address: the per-network rate is lifted.
    if "\n[ban]\n" in text:
        text = text.replace("\n[ban]\n", "\n[ban]\nconnection_rate = 0\n", 1)
    else:
        text += "\n[ban]\nconnection_rate = 0\n"
    config.write_text(text)
    began = time.time()
    if backend == "sqlite":
        fill_sqlite(node / "wharf-data" / "wharf.db", n)
    else:
        fill_postgres(url, n)
    filled = time.time() - began
    subprocess.run([str(BIN), "--config", str(config), "admin", "add", "bench", "--role", "auditor",
                    "--password-stdin"], input="search timing phrase 7\n", text=True, check=True,
                   capture_output=True)
    token = subprocess.run([str(BIN), "--config", str(config), "admin", "token", "add", "bench",
                            "--admin", "bench", "--role", "auditor"],
                           capture_output=True, text=True, check=True).stdout.strip()
    server = subprocess.Popen([str(BIN), "--config", str(config), "serve"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        results = []
        for query in combos(n):
            times = sorted(ask(port, token, query) for _ in range(3))
            results.append((statistics.median(times), query))
        results.sort(key=lambda r: r[0], reverse=True)
        size = (node / "wharf-data" / "wharf.db").stat().st_size if backend == "sqlite" else None
        print(f"\n## {backend}: {n:,} records (filled in {filled:.0f} s)"
              + (f", store file {size / 2**30:.1f} GiB" if size else ""))
        print(f"{len(results)} filter combinations, limit 100, median of 3 via the admin API:")
        ms = [r[0] for r in results]
        print(f"median {statistics.median(ms):.1f} ms, 95th percentile {ms[len(ms) // 20]:.1f} ms, "
              f"slowest {ms[0]:.1f} ms; {sum(1 for m in ms if m >= 100)} at or over 100 ms")
        print("\n| ms | records | filters |\n|---:|---:|---|")
        for took, query in results[:10]:
            print(f"| {took:.1f} | {count(port, token, query)} | "
                  f"{' '.join(f'{k}={v}' for k, v in query.items()) or '(none)'} |")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        if pg_dir:
            subprocess.run([str(ROOT / "scripts/throwaway-postgres"), "--stop", pg_dir])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed after)")
    args = parser.parse_args()
    if not BIN.exists():
        sys.exit("build first: cargo build --release")
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="wharf-events-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; {subprocess.run(['uname', '-sr'], capture_output=True, text=True).stdout.strip()}")
    try:
        for backend in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
            run(backend, args.records, workdir)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
