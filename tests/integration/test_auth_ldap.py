"""LDAP authentication against a real slapd (Debian `slapd`, seeded from LDIF, on free
loopback ports, with TLS from a test CA): search-then-bind over ldaps:// on ::1, direct bind
with StartTLS on 127.0.0.1, LDAP groups mapped to Wharf groups, home and keys from
attributes, empty and wrong passwords, fall-through to local accounts."""

import ftplib
import socket
import subprocess
import time

import paramiko
import pytest

from conftest import free_port
from logins import assert_read_only_sftp, ftps_login, https_status, sftp_password
from tls_certs import make_ca_and_leaf

PASSWORD = "correct horse battery staple"
LARA_PASSWORD = "lara-directory-secret-1"
MIKE_PASSWORD = "mike-directory-secret-2"
BASE = "dc=example,dc=org"
ADMIN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "directory-admin-secret"


class Slapd:
    def __init__(self, folder, lara_home, lara_key):
        self.folder = folder
        folder.mkdir()
        (folder / "db").mkdir()
        make_ca_and_leaf(folder, "IP:127.0.0.1,IP:::1,DNS:localhost")
        self.ldap_port, self.ldaps_port = free_port(), free_port()
        (folder / "slapd.conf").write_text(f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {folder}/slapd.pid
TLSCACertificateFile {folder}/ca.pem
TLSCertificateFile {folder}/leaf.pem
TLSCertificateKeyFile {folder}/leaf.key
database mdb
suffix "{BASE}"
rootdn "{ADMIN}"
rootpw {ADMIN_PASSWORD}
directory {folder}/db
access to attrs=userPassword by anonymous auth by self read by * none
access to * by users read by * none
""")
        (folder / "seed.ldif").write_text(f"""dn: {BASE}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{BASE}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{BASE}
objectClass: organizationalUnit
ou: groups

dn: uid=lara,ou=people,{BASE}
objectClass: inetOrgPerson
objectClass: posixAccount
uid: lara
cn: Lara
sn: Croft
uidNumber: 2001
gidNumber: 2001
homeDirectory: {lara_home}
description: {lara_key}
userPassword: {LARA_PASSWORD}

dn: uid=mike,ou=people,{BASE}
objectClass: inetOrgPerson
uid: mike
cn: Mike
sn: Nobody
userPassword: {MIKE_PASSWORD}

dn: cn=partners,ou=groups,{BASE}
objectClass: groupOfNames
cn: partners
member: uid=lara,ou=people,{BASE}
""")
        subprocess.run(["/usr/sbin/slapadd", "-f", str(folder / "slapd.conf"), "-l",
                        str(folder / "seed.ldif")], check=True, capture_output=True)
        self.start()

    def start(self):
        urls = (f"ldap://127.0.0.1:{self.ldap_port}/ ldaps://127.0.0.1:{self.ldaps_port}/ "
                f"ldaps://[::1]:{self.ldaps_port}/")
        self.proc = subprocess.Popen(["/usr/sbin/slapd", "-f", str(self.folder / "slapd.conf"), "-h",
                                      urls, "-d", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("::1", self.ldaps_port), timeout=0.5).close()
                break
            except OSError:
                assert time.time() < deadline, "slapd did not start"
                time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def directory(server):
    key = (server.key.parent / (server.key.name + ".pub")).read_text().strip()
    slapd = Slapd(server.root / "ldap", server.homes / "lara-from-ldap", key)
    (server.root / "ldap" / "bind-password").write_text(ADMIN_PASSWORD + "\n")
    server.wharf("group", "add", "partners", "--home-template", str(server.homes) + "/${USER}",
                 "--create-home", "--allow", "/**=list,read", check=True)
    server.add_account("alice", password=PASSWORD)
    yield server, slapd
    slapd.stop()


def use_chain(server, ldap_entry):
    with open(server.root / "wharf.toml", "a") as f:
        f.write(ldap_entry + '\n[[authentication]]\ntype = "local"\n')


def search_then_bind(slapd, url):
    return f"""
[[authentication]]
type = "ldap"
name = "corp-ldap"
url = "{url}"
ca = "ldap/ca.pem"
timeout = 5
bind_dn = "{ADMIN}"
bind_password = "file:ldap/bind-password"
base_dn = "ou=people,{BASE}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{user}}))"
group_base_dn = "ou=groups,{BASE}"
group_map = {{ "cn=partners, ou=groups, {BASE}" = "partners" }}
home_attribute = "homeDirectory"
key_attribute = "description"
"""


def test_ldap_users_on_every_protocol_over_ldaps_on_ipv6(directory):
    server, slapd = directory
    use_chain(server, search_then_bind(slapd, f"ldaps://[::1]:{slapd.ldaps_port}"))
    server.start()
    # lara: in cn=partners, mapped to the read-only Wharf group; home from homeDirectory.
    assert_read_only_sftp(server, "lara", LARA_PASSWORD)
    assert (server.homes / "lara-from-ldap").is_dir()
    server.paramiko("lara", host="::1").close()  # her key, read from the directory
    ftps_login(server, "lara", LARA_PASSWORD).quit()
    assert https_status(server, "lara", LARA_PASSWORD) == "200"
    ok = [e for e in server.events() if e["name"] == "login.succeeded" and e["account"] == "lara"]
    assert {e["protocol"] for e in ok} == {"ssh", "ftps", "https"}
    assert all(e["attrs"]["authenticator"] == "corp-ldap" for e in ok)

    # mike: in no mapped group, so the default group (users: full rights in his home).
    client = sftp_password(server, "mike", MIKE_PASSWORD)
    with client.open_sftp().open("upload.txt", "w") as f:
        f.write("fine")
    client.close()
    assert (server.homes / "mike" / "upload.txt").read_text() == "fine"

    # A wrong password: the directory decides, the local method is not asked.
    with pytest.raises(paramiko.AuthenticationException):
        sftp_password(server, "lara", "not-her-password")
    with pytest.raises(ftplib.error_perm, match="530"):
        ftps_login(server, "lara", "not-her-password")
    failed = server.wait_event("login.failed", account="lara", protocol="ftps")
    assert failed["attrs"]["cause"] == "wrong-password"
    assert failed["attrs"]["authenticator"] == "corp-ldap"
    # An empty password is refused, never sent as an (anonymous, successful) bind.
    assert https_status(server, "lara", "") == "401"
    empty = [e for e in server.events() if e["name"] == "login.failed" and e["account"] == "lara"
             and e["protocol"] == "https"]
    assert empty and empty[-1]["attrs"]["cause"] == "wrong-password"

    # The directory restarts: the pooled service connection has gone stale and is replaced.
    slapd.stop()
    slapd.start()
    ftps_login(server, "lara", LARA_PASSWORD).quit()

    # Not in the directory: the next method (local) decides.
    sftp_password(server, "alice", PASSWORD).close()
    local = server.wait_event("login.succeeded", account="alice")
    assert local["attrs"]["authenticator"] == "local"
    with pytest.raises(paramiko.AuthenticationException):
        sftp_password(server, "nobody", "whatever-it-is")
    assert server.wait_event("login.failed", account="nobody")["attrs"]["cause"] == "unknown-account"


def test_direct_bind_with_starttls_and_an_unreachable_directory(directory):
    server, slapd = directory
    use_chain(server, f"""
[[authentication]]
type = "ldap"
name = "corp-direct"
url = "ldap://127.0.0.1:{slapd.ldap_port}"
starttls = true
ca = "ldap/ca.pem"
bind_template = "uid={{user}},ou=people,{BASE}"
cache_seconds = 60
group_map = {{ "cn=partners,ou=groups,{BASE}" = "partners" }}
group_base_dn = "ou=groups,{BASE}"
""")
    server.start()
    ftps_login(server, "lara", LARA_PASSWORD).quit()
    assert server.wait_event("login.succeeded", account="lara")["attrs"]["authenticator"] == "corp-direct"
    # A direct bind cannot tell a wrong password from an unknown name: it decides either way.
    assert https_status(server, "alice", PASSWORD) == "401"
    refused = server.wait_event("login.failed", account="alice")
    assert refused["attrs"]["authenticator"] == "corp-direct" and refused["attrs"]["cause"] == "wrong-password"

    # The directory goes away. A login that succeeded within cache_seconds is remembered
    # (same name, same password); anything else fails closed, with the reason in the event.
    slapd.stop()
    ftps_login(server, "lara", LARA_PASSWORD).quit()
    with pytest.raises(ftplib.error_perm, match="530"):
        ftps_login(server, "lara", "another-password-1")
    failed = [e for e in server.events() if e["name"] == "login.failed" and e["account"] == "lara"]
    assert failed[-1]["attrs"]["cause"] == "service-failed"
    assert "cannot connect" in failed[-1]["message"]


def test_ldap_configuration_is_checked(server):
    with open(server.root / "wharf.toml", "a") as f:
        f.write('\n[[authentication]]\ntype = "ldap"\nurl = "ldap://127.0.0.1:389"\n'
                'bind_dn = "cn=admin,dc=example,dc=org"\nbind_password = "hunter2"\n'
                'cache_seconds = 86400\n')
    out = server.wharf("check-config")
    assert out.returncode == 1
    assert "authentication[0].url" in out.stderr and "in clear" in out.stderr
    assert "authentication[0].bind_password" in out.stderr and "env:NAME or file:PATH" in out.stderr
    assert "authentication[0].base_dn" in out.stderr
    assert "authentication[0].cache_seconds" in out.stderr
