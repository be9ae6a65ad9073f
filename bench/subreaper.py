"""Runs one server as a child subreaper, so the CPU time of every process it forks is counted.

A forking server (sshd, vsftpd) may leave session processes whose parent has already
exited; the kernel would hand them to init and their CPU time would be lost. As a child
subreaper this wrapper adopts them, reaps them, and their time lands in its own cutime,
which the benchmark reads from /proc. SIGTERM is passed on to the server's process group.

usage: python3 subreaper.py COMMAND [ARG...]
"""

import ctypes
import os
import resource
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("subreaper: prctl failed", file=sys.stderr)
        return 1
    # Hundreds of idle sessions need file descriptors in a single-process server.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = subprocess.Popen(sys.argv[1:], start_new_session=True)

    def forward(signum, _frame):
        try:
            os.killpg(server.pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while True:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            return status
        except InterruptedError:
            continue
        if pid == server.pid:
            status = os.waitstatus_to_exitcode(code)
            forward(signal.SIGTERM, None)


if __name__ == "__main__":
    sys.exit(main())
