"""In-process clients for the benchmark: login loops and idle sessions (paramiko, ftplib).

A new client process per login would measure the client's start-up more than the server,
so these loops keep one Python process and open a fresh connection each time.

usage:
  python3 inproc.py logins PROTOCOL PORT SECONDS USER SECRET WORKERS
      prints the number of completed logins
  python3 inproc.py idle PROTOCOL PORT COUNT USER SECRET
      opens COUNT sessions, prints "ready N SECONDS", holds them until stdin closes
  python3 inproc.py burst PROTOCOL PORT COUNT USER SECRET WORKERS
      COUNT logins from WORKERS client processes at once; prints the logins, the wall time
      and each login's time in seconds
PROTOCOL is sftp (SECRET: private key file), ftp or ftps (SECRET: password).
"""

import ftplib
import multiprocessing
import sys
import time
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from ftp_clients import ReusingFTP_TLS, tls_client_context  # noqa: E402

HOST = "127.0.0.1"


class Session:
    """One logged-in session, kept open until closed."""

    def __init__(self, protocol, port, user, secret):
        self.protocol = protocol
        if protocol == "sftp":
            key = paramiko.Ed25519Key.from_private_key_file(secret)
            self.transport = paramiko.Transport((HOST, port))
            self.transport.connect(username=user, pkey=key)
            self.sftp = paramiko.SFTPClient.from_transport(self.transport)
            self.sftp.stat(".")
        else:
            if protocol == "ftp":
                self.ftp = ftplib.FTP()
            else:
                self.ftp = ReusingFTP_TLS(context=tls_client_context())
            self.ftp.connect(HOST, port, timeout=30)
            self.ftp.login(user, secret)
            if protocol == "ftps":
                self.ftp.prot_p()
            self.ftp.voidcmd("NOOP")

    def close(self):
        if self.protocol == "sftp":
            self.sftp.close()
            self.transport.close()
        else:
            self.ftp.quit()


def login_loop(protocol, port, seconds, user, secret):
    deadline = time.monotonic() + seconds
    done = 0
    while time.monotonic() < deadline:
        Session(protocol, port, user, secret).close()
        done += 1
    return done


def logins(protocol, port, seconds, user, secret, workers):
    if workers == 1:
        return login_loop(protocol, port, seconds, user, secret)
    with multiprocessing.Pool(workers) as pool:
        args = [(protocol, port, seconds, user, secret)] * workers
        return sum(pool.starmap(login_loop, args))


def timed_logins(protocol, port, count, user, secret, start_at):
    """`count` logins one after the other, from `start_at` (so every worker begins together)."""
    time.sleep(max(0.0, start_at - time.time()))
    times = []
    for _ in range(count):
        t0 = time.monotonic()
        Session(protocol, port, user, secret).close()
        times.append(time.monotonic() - t0)
    return times


def burst(protocol, port, count, user, secret, workers):
    share = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    start_at = time.time() + 2  # the pool's processes are up by then
    with multiprocessing.Pool(workers) as pool:
        args = [(protocol, port, n, user, secret, start_at) for n in share]
        pending = pool.starmap_async(timed_logins, args)
        times = [t for part in pending.get() for t in part]
    wall = time.time() - start_at
    print(len(times), f"{wall:.3f}", *(f"{t:.4f}" for t in times))


def idle(protocol, port, count, user, secret):
    started = time.monotonic()
    sessions = [Session(protocol, port, user, secret) for _ in range(count)]
    print(f"ready {len(sessions)} {time.monotonic() - started:.1f}", flush=True)
    sys.stdin.read()
    for s in sessions:
        try:
            s.close()
        except Exception:  # a server that already dropped an idle session is not an error here
            pass


def main():
    mode, protocol, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "logins":
        seconds, user, secret, workers = float(sys.argv[4]), sys.argv[5], sys.argv[6], int(sys.argv[7])
        print(logins(protocol, port, seconds, user, secret, workers))
    elif mode == "burst":
        count, user, secret, workers = int(sys.argv[4]), sys.argv[5], sys.argv[6], int(sys.argv[7])
        burst(protocol, port, count, user, secret, workers)
    elif mode == "idle":
        count, user, secret = int(sys.argv[4]), sys.argv[5], sys.argv[6]
        idle(protocol, port, count, user, secret)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
