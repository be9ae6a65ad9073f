"""One login per protocol, for the authentication tests: SFTP with a password (paramiko),
explicit FTPS with PROT P (ftplib), and the REST API over HTTPS with HTTP Basic (curl)."""

import subprocess

import paramiko

from ftp_clients import ReusingFTP_TLS, tls_client_context


def sftp_password(server, user, password, host="127.0.0.1"):
    """A connected paramiko client; raises paramiko.AuthenticationException when refused."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(host, port=server.port, username=user, password=password,
                   allow_agent=False, look_for_keys=False, timeout=10)
    return client


def ftps_login(server, user, password):
    """A logged-in FTPS client; raises ftplib.error_perm (530) when refused."""
    c = ReusingFTP_TLS(context=tls_client_context())
    c.connect("127.0.0.1", server.ftps_port, timeout=15)
    c.login(user, password)
    c.prot_p()
    return c


def https_status(server, user, password):
    """The HTTP status of listing the home folder with these credentials."""
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u",
                        f"{user}:{password}", f"https://127.0.0.1:{server.https_port}/api/v1/files"],
                       capture_output=True, text=True, timeout=30)
    return r.stdout


def assert_read_only_sftp(server, user, password):
    """Logs in over SFTP with a password and checks the account can list but not write (the
    read-only group the authentication method mapped it to)."""
    import pytest
    client = sftp_password(server, user, password)
    sftp = client.open_sftp()
    assert sftp.listdir(".") == []
    with pytest.raises(PermissionError):
        sftp.open("upload.txt", "w").write("x")
    client.close()
