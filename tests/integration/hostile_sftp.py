"""A hostile SFTP server for the transfer tests (asyncssh), on 127.0.0.1:PORT.

Its one folder lists names no honest server gives: `..` parts, slashes, a newline, a name
too long, beside one plain `ok.txt`. It serves any name's content, and logs to stderr every
open, remove and rename a client asks, so a test can see what a client tried.

Usage: hostile_sftp.py PORT HOST_KEY AUTHORIZED_KEYS
"""

import asyncio
import sys
import time

import asyncssh

PORT, HOST_KEY, AUTHORIZED = int(sys.argv[1]), sys.argv[2], sys.argv[3]
MTIME = int(time.time()) - 3600
NAMES = ["ok.txt", "../other/keep.txt", "../../escape.txt", "sub/slash.txt", "nl\nname.txt",
         "L" * 300 + ".txt", "..", "."]


def log(what):
    sys.stderr.write(what + "\n")
    sys.stderr.flush()


def attrs(size):
    return asyncssh.SFTPAttrs(type=asyncssh.FILEXFER_TYPE_REGULAR, size=size, mtime=MTIME,
                              permissions=0o100644)


def content(name):
    return b"content of " + name.encode() + b"\n"


class Folder(asyncssh.SFTPServer):
    async def scandir(self, path):
        for name in NAMES:
            yield asyncssh.SFTPName(name.encode(), attrs=attrs(len(content(name))))

    def _name(self, path):
        text = path.decode(errors="replace")
        return text.split("/out/", 1)[1] if "/out/" in text else text

    def lstat(self, path):
        text = path.decode(errors="replace")
        if text.rstrip("/").endswith("/out"):
            return asyncssh.SFTPAttrs(type=asyncssh.FILEXFER_TYPE_DIRECTORY, permissions=0o40755, mtime=MTIME)
        name = self._name(path)
        if name in NAMES:
            return attrs(len(content(name)))
        raise asyncssh.SFTPNoSuchFile(text)

    stat = lstat

    def open(self, path, pflags, file_attrs):
        log(f"OPEN {path.decode(errors='replace')!r}")
        return self._name(path)

    def read(self, handle, offset, size):
        return content(handle)[offset:offset + size]

    def close(self, handle):
        pass

    def remove(self, path):
        log(f"REMOVE {path.decode(errors='replace')!r}")

    def rename(self, old, new):
        log(f"RENAME {old.decode(errors='replace')!r} {new.decode(errors='replace')!r}")


class Anyone(asyncssh.SSHServer):
    def begin_auth(self, username):
        return True


async def main():
    await asyncssh.listen("127.0.0.1", PORT, server_host_keys=[HOST_KEY], authorized_client_keys=AUTHORIZED,
                          sftp_factory=Folder, server_factory=Anyone, allow_scp=False)
    print("listening", flush=True)
    await asyncio.Future()


asyncio.run(main())
