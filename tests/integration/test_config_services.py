"""A [[service]] takes only the keys of its type: `wharf check-config` refuses a key of another
type (or one of no type at all) with the file, the line and the key, and says which types it
applies to. The configuration `wharf init` writes still passes (serving it is what the rest of
the suite does)."""

import subprocess

import pytest

from conftest import BIN

# The default configuration's services, in order: ssh, ftp, ftps-implicit, https. The cases
# add a plain-HTTP service after them as service[4].
HTTP = '\n[[service]]\nname = "web-plain"\ntype = "http"\naddress = "127.0.0.1"\nport = 1\n'


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One folder made by `wharf init`; each test writes its own file into it."""
    root = tmp_path_factory.mktemp("config-services")
    r = subprocess.run([str(BIN), "init", str(root)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return root


def check(path):
    return subprocess.run([str(BIN), "--config", str(path), "check-config"],
                          capture_output=True, text=True, timeout=60)


def with_lines(folder, name, additions):
    """Writes the default configuration plus a plain-HTTP service, with each (type, line)
    of `additions` inserted right after that service's `type = ...` line. Returns the path
    and the line number each addition landed on."""
    lines = ((folder / "wharf.toml").read_text() + HTTP).splitlines()
    landed = []
    for service_type, line in additions:
        at = next(i for i, l in enumerate(lines) if l.split("#")[0].strip() == f'type = "{service_type}"')
        lines.insert(at + 1, line)
        landed = [n + 1 if n > at else n for n in landed]
        landed.append(at + 2)
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, landed


def test_the_generated_configuration_passes(folder):
    r = check(folder / "wharf.toml")
    assert r.returncode == 0, r.stderr
    # And with a plain-HTTP service beside the others, each with only its own keys.
    path, _ = with_lines(folder, "own-keys", [
        ("http", "redirect_to_https = 8443"), ("http", "session_lifetime = 3600"),
        ("ftp", "passive_ports = [50000, 50100]"), ("ftps-implicit", "data_timeout = 30"),
        ("ssh", 'algorithms = "modern"'), ("https", "recheck_after = 60"),
    ])
    r = check(path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("service_type,index,line,key,says", [
    ("ftp", 1, 'kex = ["curve25519-sha256"]', "kex",
     ["not a setting of an ftp service", "applies to ssh services"]),
    ("https", 3, "passive_ports = [50000, 50100]", "passive_ports",
     ["not a setting of an https service", "ftp services (ftp and ftps-implicit)"]),
    ("ssh", 0, "session_timeout = 600", "session_timeout",
     ["not a setting of an ssh service", "http and manager services (http, https and manager)"]),
    ("ssh", 0, "max_upload_size = 1000", "max_upload_size",
     ["not a setting of an ssh service", "http services"]),
    ("ftps-implicit", 2, 'tls = "off"', "tls",
     ["not a setting of an ftps-implicit service", "always TLS", "type ftp only"]),
    ("https", 3, "redirect_to_https = 8443", "redirect_to_https",
     ["not a setting of an https service", "type http only"]),
    ("https", 3, "idle_timeout = 60", "idle_timeout",
     ["not a setting of an https service", "header_timeout"]),
    ("http", 5, 'host_keys = ["wharf-data/keys/ssh_host_ed25519_key"]', "host_keys",
     ["not a setting of an http service", "applies to ssh services"]),
    ("ssh", 0, "max_conections = 10", "max_conections",
     ["not a setting of any service", "did you mean `max_connections`"]),
    ("ftp", 1, 'pasive_address = "203.0.113.10"', "pasive_address",
     ["not a setting of any service", "did you mean `passive_address`"]),
])
def test_a_key_outside_its_type_is_refused_at_its_line(folder, service_type, index, line, key, says):
    path, (at,) = with_lines(folder, f"{service_type}-{key}", [(service_type, line)])
    r = check(path)
    assert r.returncode == 1, r.stderr
    assert f"{path}:{at}: service[{index}].{key}: " in r.stderr, r.stderr
    for words in says:
        assert words in r.stderr, r.stderr
    assert "remove it" in r.stderr.lower() or "correct it" in r.stderr.lower(), r.stderr
    assert "panicked" not in r.stderr
    # Every other command refuses the file the same way.
    r = subprocess.run([str(BIN), "--config", str(path), "account", "list"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"{path}:{at}: service[{index}].{key}: " in r.stderr, r.stderr


def test_every_refused_key_is_reported_at_once(folder):
    path, landed = with_lines(folder, "several", [
        ("ftp", "ciphers = []"), ("https", "active_mode = false"), ("ssh", "body_timeout = 5"),
    ])
    r = check(path)
    assert r.returncode == 1
    for (at, expected) in zip(landed, ["service[1].ciphers", "service[3].active_mode", "service[0].body_timeout"]):
        assert f"{path}:{at}: {expected}: " in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 3, r.stderr
