"""Wharf against OpenSSH sshd, vsftpd and nginx on the same machine, on loopback.

Runs each measurement alternately on Wharf and on the peer (A B, then B A, ...), takes the
median of the runs, and prints one markdown table of absolute figures and Wharf / peer
ratios. With --baseline, the peer of every row is another Wharf binary (an earlier commit,
built by `bench/run --compare REV`), so a change's effect is one table. Started by bench/run, which installs the peers and builds Wharf; see
docs/performance.md. Every process it starts is stopped, and its scratch folder removed,
on the way out.
"""

import argparse
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import servers
from servers import ROOT, USER, Scratch

CHACHA = "chacha20-poly1305@openssh.com"
AES = "aes128-gcm@openssh.com"
TLS13_CIPHER = "TLS_AES_128_GCM_SHA256"
GIB = 1 << 30


@dataclass
class Result:
    values: list = field(default_factory=list)
    cpu: list = field(default_factory=list)  # server CPU per unit of work
    extra: list = field(default_factory=list)

    def median(self):
        return statistics.median(self.values) if self.values else None


@dataclass
class Row:
    group: str
    name: str
    unit: str
    peer: str
    higher_is_better: bool = True
    target: float | None = None  # ratio subject / peer to reach (>= when higher is better)
    cpu_unit: str = ""
    cpu_target: float | None = None
    results: dict = field(default_factory=dict)  # server name -> Result
    subject: str = "wharf"  # the server measured against `peer`
    limit: float | None = None  # a bound on the subject's own figure (≤ when lower is better)


class Bench:
    def __init__(self, args):
        self.args = args
        self.password = secrets.token_urlsafe(16)
        self.scratch = Scratch(Path(args.scratch), self.password)
        self.servers = {}
        self.rows = []
        self.ssh_config = self.scratch.path / "etc" / "ssh_config"

    # -- set-up -------------------------------------------------------------
    def set_up(self):
        self.machine = machine_lines()  # before the run: the tree that was built
        s = self.scratch
        s.create_user()
        s.make_keys()
        print(f"bench: writing {self.args.size_mib} MiB and {self.args.small} small files", file=sys.stderr)
        many = "g" in set(self.args.only.split(","))
        s.make_files(self.args.size_mib, self.args.small, self.args.many_mib if many else 0)
        self.servers["wharf"] = servers.start_wharf(s, Path(self.args.wharf))
        if self.args.baseline:
            # Only Wharf against Wharf: the peers would take memory and nothing else.
            base = servers.start_wharf(s, Path(self.args.baseline), self.baseline_name())
            self.servers[base.name] = base
            s.share_big_file(self.servers["wharf"].home, base.home)
        else:
            s.share_big_file(s.peer_home, self.servers["wharf"].home)
            s.hand_peer_home_to_user()
            self.servers["openssh"] = servers.start_sshd(s)
            self.servers["vsftpd"] = servers.start_vsftpd(s)
            self.servers["nginx"] = servers.start_nginx(s)
        if "e" in set(self.args.only.split(",")):
            self.set_up_cluster()
        hosts = "".join(f"Host {name}\n  HostName 127.0.0.1\n  Port {srv.ports['ssh']}\n"
                        for name, srv in self.servers.items() if "ssh" in srv.ports)
        self.ssh_config.write_text(f"""{hosts}Host *
  User {USER}
  IdentityFile {s.key}
  IdentitiesOnly yes
  BatchMode yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  Compression no
  ControlMaster no
""")

    def baseline_name(self):
        return f"wharf-{self.args.baseline_rev}"

    def is_wharf(self, server):
        return getattr(self.servers[server], "kind", server) == "wharf"

    def set_up_cluster(self):
        """Group e: the same binary on a PostgreSQL store (one node, then two behind HAProxy)."""
        s = self.scratch
        url, postmaster = servers.start_postgres(s)
        binary = Path(self.args.wharf)
        shared = s.path / "cluster-home"
        one = servers.start_wharf(s, binary, "wharf-pg", store=url, home=shared)
        self.servers["wharf-pg"] = servers.OnStore(one, postmaster)
        nodes = [servers.start_wharf(s, binary, f"wharf-pg-{n}", store=url, home=shared) for n in ("a", "b")]
        self.servers["wharf-2pg"] = servers.OnStore(servers.Balanced("wharf-2pg", s, nodes), postmaster)

    def tear_down(self):
        for server in self.servers.values():
            server.stop()
        servers.stop_postgres()
        self.scratch.remove_user()
        if not self.args.keep:
            shutil.rmtree(self.scratch.path, ignore_errors=True)

    # -- client commands ----------------------------------------------------
    def port(self, server, service):
        return self.servers[server].ports[service]

    def batch(self, name, text):
        path = self.scratch.path / "etc" / name
        path.write_text(text)
        return path

    def transfer_cmd(self, proto, direction, server, cipher=None):
        """The client command for one 1-file transfer; uploads go to `up.bin`."""
        s = self.scratch
        host = server if self.is_wharf(server) else "openssh"
        c = ["-c", cipher] if cipher else []
        up = direction == "up"
        if proto == "sftp":
            batch = self.batch(f"{direction}.batch", f"put {s.big} up.bin\n" if up else "get big.bin /dev/null\n")
            return ["sftp", "-q", "-F", self.ssh_config, *c, "-b", batch, host]
        if proto in ("scp", "scp-O"):
            legacy = ["-O"] if proto == "scp-O" else []
            ends = [s.big, f"{host}:up.bin"] if up else [f"{host}:big.bin", "/dev/null"]
            return ["scp", "-q", *legacy, "-F", self.ssh_config, *c, *ends]
        if proto == "curl-sftp":
            port = self.port(server, "ssh")
            url = f"sftp://127.0.0.1:{port}/~/" + ("up.bin" if up else "big.bin")
            auth = ["-k", "-u", f"{USER}:", "--key", s.key, "--pubkey", f"{s.key}.pub"]
            return ["curl", "-sS", "--fail", *auth, *(["-T", s.big] if up else ["-o", "/dev/null"]), url]
        if proto in ("ftp", "ftps"):
            port = self.port(server, "ftp")
            tls = ["--ssl-reqd", "-k", "--tls13-ciphers", TLS13_CIPHER] if proto == "ftps" else []
            url = f"ftp://127.0.0.1:{port}/" + ("up.bin" if up else "big.bin")
            return ["curl", "-sS", "--fail", *tls, "-u", f"{USER}:{self.password}",
                    *(["-T", s.big] if up else ["-o", "/dev/null"]), url]
        if proto == "https":
            if self.is_wharf(server):
                base = f"https://127.0.0.1:{self.port(server, 'https')}/api/v1/files/"
                auth = ["-u", f"{USER}:{self.password}"]
            else:
                base = f"https://127.0.0.1:{self.port('nginx', 'https')}/" + ("up/" if up else "")
                auth = []
            url = base + ("up.bin" if up else "big.bin")
            return ["curl", "-sS", "--fail", "-k", "--tls13-ciphers", TLS13_CIPHER, *auth,
                    *(["-T", s.big] if up else ["-o", "/dev/null"]), url]
        raise ValueError(proto)

    def uploaded_path(self, proto, server):
        home = self.servers[server].home
        return home / "up" / "up.bin" if proto == "https" and not self.is_wharf(server) else home / "up.bin"

    def small_cmd(self, tool, server):
        s = self.scratch
        if tool == "sftp":
            batch = self.batch("small.batch", f"put -r {s.path / 'src' / 'small'} smallup\n")
            return ["sftp", "-q", "-F", self.ssh_config, "-b", batch, server]
        port = self.port(server, "ftp")
        tls = ("set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no;"
               if tool == "lftp-ftps" else "set ftp:ssl-allow no;")
        script = (f"set net:max-retries 1; set net:timeout 30; set cmd:fail-exit yes; {tls} "
                  f"open -u {USER},{self.password} -p {port} 127.0.0.1; "
                  f"mirror -R {s.path / 'src' / 'small'} smallup")
        return ["lftp", "-c", script]

    # -- measuring ----------------------------------------------------------
    def timed(self, server, cmd, timeout=900):
        srv = self.servers[server]
        cpu0 = srv.cpu_seconds()
        t0 = time.monotonic()
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
        elapsed = time.monotonic() - t0
        time.sleep(0.3)  # let session processes finish and be reaped
        cpu = srv.cpu_seconds() - cpu0
        if done.returncode != 0:
            raise RuntimeError(f"{server}: {' '.join(map(str, cmd))} failed: {done.stderr.strip()}")
        return elapsed, cpu

    def clean_uploads(self):
        for server in self.servers.values():
            for path in [server.home / "up.bin", server.home / "up" / "up.bin"]:
                path.unlink(missing_ok=True)
            shutil.rmtree(server.home / "smallup", ignore_errors=True)
            for path in server.home.glob("many-*.bin"):
                path.unlink()
            for path in (server.home / "up").glob("many-*.bin"):
                path.unlink()
        subprocess.run(["sync"])

    def measure_transfer(self, row, server, proto, direction, cipher):
        self.clean_uploads()
        elapsed, cpu = self.timed(server, self.transfer_cmd(proto, direction, server, cipher))
        size = self.scratch.big.stat().st_size
        if direction == "up":
            got = self.uploaded_path(proto, server).stat().st_size
            if got != size:
                raise RuntimeError(f"{server}: {row.name}: uploaded {got} bytes of {size}")
        result = row.results.setdefault(server, Result())
        result.values.append(size / elapsed / 1e6)
        result.cpu.append(cpu / (size / GIB))

    def measure_small(self, row, server, tool):
        self.clean_uploads()
        elapsed, cpu = self.timed(server, self.small_cmd(tool, server))
        count = len(list((self.servers[server].home / "smallup").iterdir()))
        if count != self.args.small:
            raise RuntimeError(f"{server}: {row.name}: {count} files of {self.args.small}")
        result = row.results.setdefault(server, Result())
        result.values.append(count / elapsed)
        result.cpu.append(cpu / count * 1000)

    def many_cmd(self, proto, server, k):
        """Client `k` of group g: download the 64 MiB file, then upload it as many-K.bin."""
        s = self.scratch
        if proto == "sftp":
            batch = self.batch(f"many-{k}.batch", f"get mid.bin /dev/null\nput {s.mid} many-{k}.bin\n")
            return ["sftp", "-q", "-F", self.ssh_config, "-b", batch, server if self.is_wharf(server) else "openssh"]
        port = self.port(server, "ftp")
        curl = ["curl", "-sS", "--fail", "--ssl-reqd", "-k", "--tls13-ciphers", TLS13_CIPHER,
                "-u", f"{USER}:{self.password}"]
        base = f"ftp://127.0.0.1:{port}/"
        down = " ".join(curl + ["-o", "/dev/null", base + "mid.bin"])
        up = " ".join(curl + ["-T", str(s.mid), base + f"many-{k}.bin"])
        return ["sh", "-c", f"{down} && {up}"]

    def measure_many(self, rows, server, proto, clients):
        """Group g: `clients` clients at once, each downloading then uploading the 64 MiB file.
        Fills rows (aggregate MB/s, slowest / median client time, peak KiB per transfer)."""
        self.clean_uploads()
        srv = self.servers[server]
        time.sleep(1)
        before = srv.pss_kib()
        cpu0 = srv.cpu_seconds()
        t0 = time.monotonic()
        procs = [subprocess.Popen([str(c) for c in self.many_cmd(proto, server, k)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for k in range(clients)]
        ended = {}
        peak = before
        while len(ended) < clients:
            for k, proc in enumerate(procs):
                if k not in ended and proc.poll() is not None:
                    ended[k] = time.monotonic() - t0
            peak = max(peak, srv.pss_kib())
            if time.monotonic() - t0 > 1800:
                for proc in procs:
                    proc.kill()
                raise RuntimeError(f"{server}: {clients} clients did not finish in 30 minutes")
            time.sleep(0.2)
        wall = max(ended.values())
        time.sleep(0.3)
        cpu = srv.cpu_seconds() - cpu0
        failed = [p.stderr.read().strip() for p in procs if p.returncode != 0]
        if failed:
            raise RuntimeError(f"{server}: {len(failed)} of {clients} clients failed: {failed[0][-1000:]}")
        size = self.scratch.mid.stat().st_size
        for k in range(clients):
            got = (srv.home / f"many-{k}.bin").stat().st_size
            if got != size:
                raise RuntimeError(f"{server}: client {k} uploaded {got} bytes of {size}")
        moved = 2 * clients * size
        aggregate, fairness, memory = rows
        r = aggregate.results.setdefault(server, Result())
        r.values.append(moved / wall / 1e6)
        r.cpu.append(cpu / (moved / GIB))
        fairness.results.setdefault(server, Result()).values.append(
            max(ended.values()) / statistics.median(ended.values()))
        memory.results.setdefault(server, Result()).values.append((peak - before) / clients)

    def measure_burst(self, row, server, count, workers):
        """Group g: `count` SFTP key logins from `workers` clients at once."""
        port = self.port(server, "ssh")
        cmd = ["python3", servers.BENCH / "inproc.py", "burst", "sftp", port, count, USER, self.scratch.key,
               workers]
        srv = self.servers[server]
        cpu0 = srv.cpu_seconds()
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900)
        time.sleep(0.3)
        cpu = srv.cpu_seconds() - cpu0
        if done.returncode != 0:
            raise RuntimeError(f"{server}: login burst failed: {done.stderr.strip()[-2000:]}")
        fields = done.stdout.split()
        logins, wall, times = int(fields[0]), float(fields[1]), sorted(float(t) for t in fields[2:])
        if logins != count:
            raise RuntimeError(f"{server}: {logins} logins of {count}")
        result = row.results.setdefault(server, Result())
        result.values.append(logins / wall)
        result.cpu.append(cpu / logins * 1000)
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        result.extra.append(f"99th-percentile login {p99 * 1000:.0f} ms")

    def measure_logins(self, row, server, proto):
        secret = self.scratch.key if proto == "sftp" else self.password
        port = self.port(server, "ssh" if proto == "sftp" else "ftp")
        seconds = self.args.login_seconds
        cmd = ["python3", servers.BENCH / "inproc.py", "logins", proto, port, seconds, USER, secret,
               self.args.login_workers]
        srv = self.servers[server]
        cpu0 = srv.cpu_seconds()
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=seconds * 10 + 60)
        time.sleep(0.3)
        cpu = srv.cpu_seconds() - cpu0
        if done.returncode != 0:
            raise RuntimeError(f"{server}: login loop failed: {done.stderr.strip()[-2000:]}")
        count = int(done.stdout.split()[-1])
        result = row.results.setdefault(server, Result())
        result.values.append(count / seconds)
        result.cpu.append(cpu / max(count, 1) * 1000)

    def measure_idle(self, row, server, proto):
        secret = self.scratch.key if proto == "sftp" else self.password
        port = self.port(server, "ssh" if proto == "sftp" else "ftp")
        srv = self.servers[server]
        # A fresh server that has served one session: the figure is what each further
        # idle session adds, not heap left over from earlier measurements.
        srv.relaunch()
        inproc = str(servers.BENCH / "inproc.py")
        subprocess.run(["python3", inproc, "logins", proto, str(port), "0.01", USER, str(secret), "1"],
                       check=True, capture_output=True, timeout=60)
        time.sleep(1)
        before, procs_before = srv.pss_kib(), srv.processes()
        helper = subprocess.Popen(
            ["python3", str(servers.BENCH / "inproc.py"), "idle", proto, str(port), str(self.args.idle), USER,
             str(secret)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = helper.stdout.readline().split()
        if not line or line[0] != "ready":
            helper.kill()
            raise RuntimeError(f"{server}: idle sessions failed: {helper.stderr.read()[-2000:]}")
        time.sleep(3)
        after, procs_after = srv.pss_kib(), srv.processes()
        helper.stdin.close()
        helper.wait(120)
        time.sleep(1)
        count = int(line[1])
        result = row.results.setdefault(server, Result())
        result.values.append((after - before) / count)
        result.extra.append(f"{(procs_after - procs_before) / count:g} processes/session")
        result.extra.append(f"opened in {line[2]} s")

    # -- the plan -----------------------------------------------------------
    def plan(self):
        """(row, measure(server)) pairs, in the order each round runs them."""
        only = set(self.args.only.split(","))
        plan = []

        def add(row, fn):
            self.rows.append(row)
            plan.append((row, fn))

        if "a" in only:
            for cipher, label in [(CHACHA, "chacha20-poly1305"), (AES, "aes128-gcm")]:
                for proto, client in [("sftp", "sftp"), ("scp", "scp (SFTP mode)"), ("scp-O", "scp -O")]:
                    kind = "SFTP" if proto == "sftp" else "SCP"
                    for d in ["up", "down"]:
                        row = Row("a", f"{kind} {d}load, {client}, {label}", "MB/s", "openssh", True, 1.0,
                                  "s/GiB", 1.0)
                        add(row, lambda srv, r=row, p=proto, d=d, c=cipher: self.measure_transfer(r, srv, p, d, c))
            for d in ["up", "down"]:
                row = Row("a", f"SFTP {d}load, curl (libssh2)", "MB/s", "openssh", True, 1.0, "s/GiB", 1.0)
                add(row, lambda srv, r=row, d=d: self.measure_transfer(r, srv, "curl-sftp", d, None))
            for proto, label in [("ftp", "FTP"), ("ftps", "FTPS explicit, PROT P")]:
                for d in ["up", "down"]:
                    row = Row("a", f"{label} {d}load, curl", "MB/s", "vsftpd", True, 1.0, "s/GiB")
                    add(row, lambda srv, r=row, p=proto, d=d: self.measure_transfer(r, srv, p, d, None))
            for d in ["up", "down"]:
                row = Row("a", f"HTTPS {d}load, curl", "MB/s", "nginx", True, 0.9 if d == "down" else None, "s/GiB")
                add(row, lambda srv, r=row, d=d: self.measure_transfer(r, srv, "https", d, None))
        if "b" in only:
            for tool, label, peer, target in [("sftp", "SFTP, sftp put -r", "openssh", 1.0),
                                              ("lftp-ftp", "FTP, lftp mirror -R", "vsftpd", None),
                                              ("lftp-ftps", "FTPS, lftp mirror -R", "vsftpd", None)]:
                row = Row("b", f"{self.args.small} x 4 KiB, {label}", "files/s", peer, True, target, "ms/file")
                add(row, lambda srv, r=row, t=tool: self.measure_small(r, srv, t))
        if "c" in only:
            for proto, label, peer, target in [("sftp", "SFTP key logins (paramiko)", "openssh", 2.0),
                                               ("ftp", "FTP logins (ftplib)", "vsftpd", None),
                                               ("ftps", "FTPS logins, AUTH TLS + PROT P (ftplib)", "vsftpd", None)]:
                row = Row("c", label, "logins/s", peer, True, target, "ms/login")
                add(row, lambda srv, r=row, p=proto: self.measure_logins(r, srv, p))
        if "e" in only:
            # The store's cost: the same binary on PostgreSQL against SQLite, then two nodes
            # behind HAProxy against one (same machine: this shows overhead, not scale).
            for subject, peer, what, target in [("wharf-pg", "wharf", "store on PostgreSQL / SQLite", 0.8),
                                                ("wharf-2pg", "wharf-pg", "2 nodes behind HAProxy / 1 node", None)]:
                row = Row("e", f"SFTP key logins (paramiko), {what}", "logins/s", peer, True, target,
                          "ms/login", subject=subject)
                add(row, lambda srv, r=row: self.measure_logins(r, srv, "sftp"))
                row = Row("e", f"{self.args.small} x 4 KiB, SFTP, sftp put -r, {what}", "files/s", peer, True,
                          target, "ms/file", subject=subject)
                add(row, lambda srv, r=row: self.measure_small(r, srv, "sftp"))
        if "d" in only:
            for proto, label, peer, target in [("sftp", "idle SFTP session", "openssh", 0.1),
                                               ("ftps", "idle FTPS session (PROT P)", "vsftpd", None)]:
                row = Row("d", f"{label}, {self.args.idle} open", "KiB PSS/session", peer, False, target)
                add(row, lambda srv, r=row, p=proto: self.measure_idle(r, srv, p))
        if "g" in only:
            for proto, label, peer in [("sftp", "SFTP", "openssh"), ("ftps", "FTPS (PROT P)", "vsftpd")]:
                for clients in [int(n) for n in self.args.many_clients.split(",")]:
                    what = f"{clients} clients, {label}, {self.args.many_mib} MiB down then up each"
                    rows = (Row("g", f"{what}: aggregate", "MB/s", peer, True, 1.0, "s/GiB"),
                            Row("g", f"{what}: slowest / median client", "×", peer, False, None, limit=2.0),
                            Row("g", f"{what}: peak memory growth per client", "KiB PSS", peer, False, None,
                                limit=1024.0))
                    add(rows[0], lambda srv, rs=rows, p=proto, n=clients: self.measure_many(rs, srv, p, n))
                    self.rows.extend(rows[1:])
            row = Row("g", "1000 SFTP key logins from 50 clients at once (paramiko)", "logins/s", "openssh",
                      True, None, "ms/login")
            add(row, lambda srv, r=row: self.measure_burst(r, srv, 1000, 50))
        if self.args.baseline:
            for row in self.rows:
                row.peer = self.baseline_name()
                row.target = row.cpu_target = row.limit = None  # the targets are against the peers
        return plan

    def run(self):
        plan = self.plan()
        for round_no in range(self.args.runs):
            for row, measure in plan:
                order = [row.subject, row.peer] if round_no % 2 == 0 else [row.peer, row.subject]
                for server in order:
                    print(f"bench: round {round_no + 1}/{self.args.runs}: {row.name}: {server}", file=sys.stderr)
                    measure(server)

    # -- report -------------------------------------------------------------
    def report(self) -> str:
        title = "Wharf benchmark" if not self.args.baseline else \
            f"Wharf benchmark: this tree against {self.baseline_name()}"
        lines = [f"{title}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
                 *(f"- {line}" for line in getattr(self, "machine", None) or machine_lines()), "",
                 f"Runs per figure: {self.args.runs} (alternating Wharf and peer); medians [min-max]. "
                 f"File: {self.args.size_mib} MiB; small files: {self.args.small} x 4 KiB; "
                 f"idle sessions: {self.args.idle}; login loops: {self.args.login_seconds} s, "
                 f"{self.args.login_workers} client process(es).", "",
                 "| group | measurement | unit | Wharf | peer | peer figure | Wharf / peer | target | "
                 "server CPU Wharf / peer | CPU ratio (target) |",
                 "|---|---|---|---:|---|---:|---:|---|---|---|"]
        for row in self.rows:
            w, p = row.results.get(row.subject), row.results.get(row.peer)
            if not (w and p and w.values and p.values):
                continue
            ratio = w.median() / p.median() if p.median() else float("inf")
            target = ""
            if row.target is not None:
                met = ratio >= row.target if row.higher_is_better else ratio <= row.target
                target = f"{'≥' if row.higher_is_better else '≤'} {row.target:g} {'met' if met else 'NOT met'}"
            if row.limit is not None:
                met = w.median() >= row.limit if row.higher_is_better else w.median() <= row.limit
                target = f"Wharf {'≥' if row.higher_is_better else '≤'} {row.limit:g} {'met' if met else 'NOT met'}"
            cpu = cpu_ratio = ""
            if w.cpu and p.cpu:
                wc, pc = statistics.median(w.cpu), statistics.median(p.cpu)
                cpu = f"{wc:.2f} / {pc:.2f} {row.cpu_unit}"
                cpu_ratio = f"{wc / pc:.2f}" if pc else "-"
                if row.cpu_target is not None:
                    cpu_ratio += f" (≤ {row.cpu_target:g} {'met' if wc / pc <= row.cpu_target else 'NOT met'})"
            name = row.name if row.subject == "wharf" else f"{row.name} ({row.subject})"
            lines.append(f"| {row.group} | {name} | {row.unit} | {fmt(w)} | {row.peer} | {fmt(p)} | "
                         f"{ratio:.2f} | {target} | {cpu} | {cpu_ratio} |")
        extras = [f"- {row.name}: {srv}: {'; '.join(dict.fromkeys(r.extra))}"
                  for row in self.rows for srv, r in row.results.items() if r.extra]
        if extras:
            lines += ["", *extras]
        return "\n".join(lines) + "\n"


def fmt(result: Result) -> str:
    m = result.median()
    digits = 0 if m >= 100 else 1
    return f"{m:.{digits}f} [{min(result.values):.{digits}f}-{max(result.values):.{digits}f}]"


def version(cmd) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not found"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"


def machine_lines():
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    pkg = lambda name: version(["dpkg-query", "-W", "-f", "${Version}", name])  # noqa: E731
    return [
        f"Machine: {os.cpu_count()} CPUs ({cpu}), {int(mem) // 1024 // 1024} GiB RAM, "
        f"Linux {platform.release()}, load average at start {os.getloadavg()[0]:.2f}",
        f"Wharf {rev}{' (with uncommitted changes)' if dirty else ''}, release build",
        f"OpenSSH sshd {pkg('openssh-server')} (internal-sftp, UsePAM no); vsftpd {pkg('vsftpd')}; "
        f"nginx {pkg('nginx')}",
        f"Clients: {version(['ssh', '-V'])}; {version(['curl', '--version'])}; "
        f"{version(['lftp', '--version'])}",
        "Client and servers share the machine's CPUs; everything runs on 127.0.0.1.",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wharf", default=str(ROOT / "target" / "release" / "wharf"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--login-seconds", type=float, default=10)
    parser.add_argument("--login-workers", type=int, default=1)
    parser.add_argument("--many-mib", type=int, default=64, help="group g: the file each client moves")
    parser.add_argument("--many-clients", default="1,8,32,128", help="group g: the client counts")
    parser.add_argument("--only", default="a,b,c,d,e", help="groups to run: a (1 file), b (small files), "
                        "c (logins), d (idle memory), e (store on PostgreSQL, nodes behind HAProxy), "
                        "g (many clients at once; not in the default run)")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--scratch", help="scratch folder (default: a new one under the temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--baseline", help="another Wharf binary to measure against instead of the peers "
                        "(bench/run --compare REV builds one)")
    parser.add_argument("--baseline-rev", default="baseline", help="the baseline's name in the table")
    args = parser.parse_args()
    if args.baseline and "e" in args.only.split(","):
        sys.exit("bench: group e compares stores of one binary; it does not run with --baseline")
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it creates a throwaway user for the peers)")
    args.scratch = args.scratch or tempfile.mkdtemp(prefix="wharf-bench-")
    if args.baseline:
        args.baseline = str(Path(args.baseline).resolve())
    bench = Bench(args)
    try:
        bench.set_up()
        bench.run()
    finally:
        table = bench.report()
        bench.tear_down()
    print(table)
    if args.out:
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
