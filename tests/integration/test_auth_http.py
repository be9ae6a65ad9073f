"""The HTTP API authentication method, in a chain with local accounts: a real HTTPS service
(Python's http.server behind TLS, with a CA made by openssl) accepts, passes to the next
method, rejects, and stalls; logins over SFTP, FTPS and HTTPS follow its answers."""

import ftplib
import http.server
import json
import ssl
import subprocess
import threading
import time

import paramiko
import pytest

from conftest import free_port
from logins import assert_read_only_sftp, ftps_login, https_status, sftp_password
from tls_certs import make_ca_and_leaf

PASSWORD = "correct horse battery staple"
HAL_PASSWORD = "hal-9000-open-the-pod-bay"


class JsonAuthService:
    """An HTTPS authentication service on loopback (certificate from `folder`'s leaf.pem):
    records every request, with its Authorization header, and answers each with the
    (status, JSON body or None) that `decide(attempt)` returns (tests may replace it)."""

    def __init__(self, folder, decide):
        self.requests = []
        self.decide = decide
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                attempt = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                attempt["authorization"] = self.headers.get("Authorization")
                service.requests.append(attempt)
                status, body = service.decide(attempt)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


class AuthService(JsonAuthService):
    """The administrator's service: decides by user name."""

    def __init__(self, folder, hal_key_fingerprint):
        def decide(attempt):
            user = attempt["username"]
            if user == "hal":
                good = (attempt.get("password") == HAL_PASSWORD
                        or attempt.get("public_key_fingerprint") == hal_key_fingerprint)
                if good:
                    return 200, {"groups": ["partners"]}
                return 403, {"message": "wrong password for hal"}
            if user == "ivy":
                return 403, {"message": "contract ended"}
            if user == "slow":
                time.sleep(4)
                return 200, {"groups": ["partners"]}
            if user == "odd":
                return 500, {"error": "boom"}
            return 401, None

        super().__init__(folder, decide)


@pytest.fixture
def chain(server, monkeypatch):
    folder = server.root / "authsvc"
    folder.mkdir()
    make_ca_and_leaf(folder)
    fp = subprocess.run(["ssh-keygen", "-lf", str(server.key) + ".pub"], capture_output=True,
                        text=True, check=True).stdout.split()[1]
    service = AuthService(folder, fp)
    (server.root / "token").write_text("s3cret-token\n")
    with open(server.root / "wharf.toml", "a") as f:
        f.write(f"""
[[authentication]]
type = "http"
name = "partner-api"
url = "https://127.0.0.1:{service.port}/wharf/check"
ca = "authsvc/ca.pem"
timeout = 2
bearer_token = "file:token"

[[authentication]]
type = "local"
""")
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=list,read", check=True)
    server.add_account("alice", password=PASSWORD)
    server.add_account("slow", password=PASSWORD)
    server.add_ftp_service()
    server.start()
    yield server, service
    service.close()


def test_http_method_accepts_passes_and_rejects_on_every_protocol(chain):
    server, service = chain
    # Accepted by the service: the group it names gives home and (read-only) permissions.
    assert_read_only_sftp(server, "hal", HAL_PASSWORD)
    assert (server.homes / "hal").is_dir()
    server.paramiko("hal").close()  # the key, which the service knows by its fingerprint
    ftps_login(server, "hal", HAL_PASSWORD).quit()
    assert https_status(server, "hal", HAL_PASSWORD) == "200"
    ok = [e for e in server.events() if e["name"] == "login.succeeded" and e["account"] == "hal"]
    assert {e["protocol"] for e in ok} == {"ssh", "ftps", "https"}
    assert all(e["attrs"]["authenticator"] == "partner-api" for e in ok)

    # What the service was sent.
    first = service.requests[0]
    assert first["username"] == "hal" and first["password"] == HAL_PASSWORD
    assert first["protocol"] == "ssh" and first["service"] == "ssh"
    assert first["remote_address"] == "127.0.0.1" and first["authorization"] == "Bearer s3cret-token"
    keyed = [r for r in service.requests if "public_key" in r]
    assert keyed and keyed[0]["public_key"].startswith("ssh-ed25519 ") and "password" not in keyed[0]

    # 401: not the service's user; the local method decides.
    sftp_password(server, "alice", PASSWORD).close()
    assert https_status(server, "alice", PASSWORD) == "200"
    local = server.wait_event("login.succeeded", account="alice")
    assert local["attrs"]["authenticator"] == "local"

    # 403: refused, and the next method is not asked.
    for user, password in [("ivy", "anything-at-all"), ("hal", "not-hal-password")]:
        with pytest.raises(paramiko.AuthenticationException):
            sftp_password(server, user, password)
        with pytest.raises(ftplib.error_perm, match="530"):
            ftps_login(server, user, password)
        assert https_status(server, user, password) == "401"
    refused = server.wait_event("login.failed", account="ivy", protocol="ftps")
    assert refused["message"] == "refused by the authentication service: contract ended"
    assert refused["attrs"]["authenticator"] == "partner-api" and refused["attrs"]["cause"] == "refused"

    # Neither knows the name: an unknown account, decided by no method.
    with pytest.raises(paramiko.AuthenticationException):
        sftp_password(server, "nobody", "whatever-it-is")
    unknown = server.wait_event("login.failed", account="nobody")
    assert unknown["attrs"]["cause"] == "unknown-account" and unknown["attrs"]["authenticator"] == "none"

    # A name no account can have (a path, or too long) is refused without asking the service.
    asked = len(service.requests)
    with pytest.raises(paramiko.AuthenticationException):
        sftp_password(server, "../hal", HAL_PASSWORD)
    with pytest.raises(ftplib.error_perm, match="530"):
        ftps_login(server, "h" * 65, "whatever-it-is")
    assert https_status(server, "hal hal", HAL_PASSWORD) == "401"
    causes = [e["attrs"]["cause"] for e in server.events() if e["name"] == "login.failed"][-3:]
    assert causes == ["unknown-account"] * 3
    assert [r["username"] for r in service.requests[asked:]] == []


def test_a_failing_service_stops_the_chain(chain):
    server, service = chain
    # "slow" exists locally, but the service, asked first, does not answer in time: refused.
    started = time.time()
    with pytest.raises(paramiko.AuthenticationException):
        sftp_password(server, "slow", PASSWORD)
    assert time.time() - started < 8
    failed = server.wait_event("login.failed", account="slow")
    assert failed["message"] == "authentication service failed: no answer within 2 s"
    assert failed["attrs"]["cause"] == "service-failed"
    # An answer outside the contract is a failure too.
    assert https_status(server, "odd", "whatever-it-is") == "401"
    odd = server.wait_event("login.failed", account="odd")
    assert "unexpected answer 500" in odd["message"]


def test_the_service_certificate_is_verified(server):
    folder = server.root / "authsvc"
    folder.mkdir()
    make_ca_and_leaf(folder)
    service = AuthService(folder, "none")
    try:
        # No ca: the system's CAs do not know the test CA, so the handshake is refused.
        with open(server.root / "wharf.toml", "a") as f:
            f.write(f'\n[[authentication]]\ntype = "http"\nurl = "https://127.0.0.1:{service.port}/"\n')
        server.start()
        with pytest.raises(paramiko.AuthenticationException):
            sftp_password(server, "hal", HAL_PASSWORD)
        failed = server.wait_event("login.failed", account="hal")
        assert "TLS handshake failed" in failed["message"]
        assert service.requests == []
    finally:
        service.close()


def test_chain_configuration_errors_name_the_line(server):
    with open(server.root / "wharf.toml", "a") as f:
        f.write('\n[[authentication]]\ntype = "http"\nbearer_token = "literal"\n'
                '\n[[authentication]]\ntype = "ldap"\n')
    out = server.wharf("check-config")
    assert out.returncode == 1
    assert "authentication[0].url" in out.stderr
    assert "authentication[0].bearer_token" in out.stderr and "env:NAME or file:PATH" in out.stderr
    assert "authentication[1].url" in out.stderr and "authentication[1].bind_dn" in out.stderr
