"""Web-client and REST sessions of a cluster: kept in the store, so any node serves them.

A browser session, its CSRF token, a bearer token and a login waiting for its one-time code
are rows of the one PostgreSQL store (keyed by the SHA-256 of the token, never the token):
a round-robin balancer needs no stickiness, a logout on one node ends the session on every
node, and a node's death logs nobody out."""

import base64
import hashlib
import http.client
import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.parse

import pytest

from conftest import free_port
from test_totp import enrol, totp

PASSWORD = "correct horse battery staple"


def call(port, method, path, cookies=None, headers=None, body=None):
    """One request on a new connection (a balancer may send each to another node)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30,
                                       context=ssl._create_unverified_context())
    headers = dict(headers or {})
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    set_cookies = {}
    for value in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = value.partition("=")
        set_cookies[name] = rest.split(";", 1)[0]
    return response.status, set_cookies, data


def form(fields):
    return urllib.parse.urlencode(fields), {"Content-Type": "application/x-www-form-urlencoded"}


def hidden(page, name):
    return re.search(rf'name="{name}" value="([^"]*)"', page.decode()).group(1)


def start_login(port, user):
    """The login form, then the password: the answer to the POST, and the form's CSRF
    cookie and value."""
    status, cookies, page = call(port, "GET", "/login")
    assert status == 200
    login_csrf = cookies["__Host-wharf-login"]
    assert hidden(page, "csrf") == login_csrf
    body, headers = form({"csrf": login_csrf, "user": user, "password": PASSWORD})
    answer = call(port, "POST", "/login", cookies=cookies, headers=headers, body=body)
    return answer, cookies


def browser_login(port, user):
    (status, cookies, _), _ = start_login(port, user)
    assert status == 303, status
    return {"__Host-wharf": cookies["__Host-wharf"]}


def page_csrf(port, session):
    status, _, page = call(port, "GET", "/browse/", cookies=session)
    assert status == 200, status
    return re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.decode()).group(1)


def listing(port, session=None, headers=None):
    status, _, body = call(port, "GET", "/api/v1/files", cookies=session, headers=headers)
    return status, body


def upload(port, session, csrf, name, data):
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    return call(port, "PUT", f"/api/v1/files/{name}", cookies=session, headers=headers,
                body=data)[0]


def download(port, session, name, headers=None):
    status, _, body = call(port, "GET", f"/api/v1/files/{name}", cookies=session,
                           headers=headers)
    return status, body


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def balancer(tmp_path):
    """A round-robin HAProxy (TCP, TLS passed through, no stickiness) in front of the given
    HTTPS ports; its port."""
    if not shutil.which("haproxy"):
        pytest.skip("haproxy is not installed (apt-get install -y haproxy)")
    procs = []

    def start(*ports):
        port = free_port()
        servers = "\n".join(f"    server n{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(f"""global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance roundrobin
{servers}
""")
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                call(port, "GET", "/login")
                return port
            except OSError:
                time.sleep(0.1)
        raise AssertionError("haproxy did not start")

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_session_made_through_a_round_robin_balancer_works_on_both(cluster, balancer):
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_account("wendy", password=PASSWORD)
    a.start()
    b.start()
    lb = balancer(a.https_port, b.https_port)

    session = browser_login(lb, "wendy")
    csrf = page_csrf(lb, session)
    # Each request on a new connection: the balancer alternates between the nodes.
    for i in range(4):
        assert upload(lb, session, csrf, f"via-lb-{i}.txt", f"upload {i}\n".encode()) == 201
    for i in range(4):
        assert download(lb, session, f"via-lb-{i}.txt") == (200, f"upload {i}\n".encode())
    status, body = listing(lb, session)
    assert status == 200 and b"via-lb-3.txt" in body
    # Both nodes served uploads of the one session.
    nodes = {e["node"] for e in a.events() if e["name"] == "upload.finished"}
    assert nodes == {"a", "b"}
    # A state-changing request without the CSRF token is refused on either node.
    assert upload(a.https_port, session, None, "forged.txt", b"x") == 403
    assert upload(b.https_port, session, None, "forged.txt", b"x") == 403
    assert upload(b.https_port, session, "0" * 64, "forged.txt", b"x") == 403


def test_session_and_csrf_from_a_work_on_b_and_logout_on_b_ends_them_on_a(cluster):
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_account("xena", password=PASSWORD)
    a.start()
    b.start()

    session = browser_login(a.https_port, "xena")
    csrf = page_csrf(a.https_port, session)
    # B gives the session's pages the same CSRF token and takes it.
    assert page_csrf(b.https_port, session) == csrf
    assert upload(b.https_port, session, csrf, "from-b.txt", b"made on b\n") == 201
    assert download(a.https_port, session, "from-b.txt") == (200, b"made on b\n")
    assert download(b.https_port, session, "from-b.txt") == (200, b"made on b\n")
    status, body = listing(b.https_port, session)
    assert status == 200 and b"from-b.txt" in body

    # The store keeps hashes only: neither the cookie nor the CSRF token is in it.
    cookie = session["__Host-wharf"]
    rows = cluster.psql("SELECT token_hash || ' ' || coalesce(csrf_hash, '') FROM web_sessions"
                        " WHERE kind = 'cookie'")
    assert rows == f"{sha(cookie)} {sha(csrf)}"
    dump = cluster.psql("SELECT string_agg(t::text, ' ') FROM web_sessions t")
    assert cookie not in dump and csrf not in dump

    # Logout through B: A refuses the cookie at its next request.
    status, _, _ = call(b.https_port, "POST", "/logout", cookies=session,
                        headers={"X-CSRF-Token": csrf})
    assert status == 204
    assert listing(a.https_port, session)[0] == 401
    assert listing(b.https_port, session)[0] == 401
    assert cluster.psql("SELECT count(*) FROM web_sessions") == "0"


def test_a_pending_second_factor_login_started_on_a_is_completed_on_b(cluster):
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_account("yuri", password=PASSWORD)
    secret = enrol(a, "yuri")["secret"]
    a.start()
    b.start()

    (status, _, page), login_cookies = start_login(a.https_port, "yuri")
    assert status == 200 and b"Verification code" in page
    pending = hidden(page, "pending")
    assert cluster.psql(f"SELECT tries_left FROM web_sessions WHERE token_hash = '{sha(pending)}'"
                        " AND kind = 'pending'") == "3"
    code = totp(secret)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    def send(port, value):
        body, headers = form({"csrf": login_cookies["__Host-wharf-login"], "pending": pending,
                              "code": value})
        return call(port, "POST", "/login/code", cookies=login_cookies, headers=headers, body=body)

    # A wrong code on A counts against the login wherever it goes on.
    status, _, page = send(a.https_port, wrong)
    assert status == 401 and b"Wrong code" in page
    assert cluster.psql(f"SELECT tries_left FROM web_sessions WHERE token_hash = '{sha(pending)}'"
                        ) == "2"
    status, cookies, _ = send(b.https_port, code)
    assert status == 303, status
    session = {"__Host-wharf": cookies["__Host-wharf"]}
    assert listing(a.https_port, session)[0] == 200
    assert listing(b.https_port, session)[0] == 200
    # Taken once: the same pending login cannot be completed again, on either node.
    status, _, page = send(a.https_port, code)
    assert status == 401 and b"expired" in page
    ok = b.wait_event("login.succeeded", account="yuri")
    assert ok["node"] == "b" and ok["attrs"]["second_factor"] == "totp"


def test_kill_9_of_a_leaves_its_sessions_working_on_b(cluster):
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_account("zoe", password=PASSWORD)
    a.start()
    b.start()

    session = browser_login(a.https_port, "zoe")
    csrf = page_csrf(a.https_port, session)
    assert upload(a.https_port, session, csrf, "before.txt", b"before the crash\n") == 201
    basic = "Basic " + base64.b64encode(f"zoe:{PASSWORD}".encode()).decode()
    status, _, body = call(a.https_port, "POST", "/api/v1/token",
                           headers={"Authorization": basic})
    assert status == 201
    token = json.loads(body)["token"]
    bearer = {"Authorization": f"Bearer {token}"}

    a.proc.kill()
    a.proc.wait()

    assert download(b.https_port, session, "before.txt") == (200, b"before the crash\n")
    assert upload(b.https_port, session, csrf, "after.txt", b"after\n") == 201
    status, body = listing(b.https_port, headers=bearer)
    assert status == 200 and b"after.txt" in body
    # The token is revoked through B for good.
    assert call(b.https_port, "DELETE", "/api/v1/token", headers=bearer)[0] == 204
    assert listing(b.https_port, headers=bearer)[0] == 401
