"""Plain TCP connections to a listener, to see what it says first: whether it admits a
connection is decided before any protocol starts (bans, connection caps)."""

import socket


def connect(host, port, source=None):
    """A TCP connection; `source` binds the client's address (any 127.x address is ours)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def greeting(s):
    """What the server says first: b"" when it closes at once, None when it waits for the
    client (TLS), else its greeting."""
    s.settimeout(2)
    try:
        return s.recv(200)
    except socket.timeout:
        return None
    except ConnectionResetError:
        return b""


def first_bytes(host, port, source=None):
    with connect(host, port, source) as s:
        return greeting(s)
