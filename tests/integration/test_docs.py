"""The documentation stays true to the binary: every TOML snippet in README.md and docs/
passes `wharf check-config` (or `wharf apply`, for account and group files), and the command
reference in docs/configuration.md lists exactly the commands and options `--help` shows.

A snippet that is only part of a file says so in an HTML comment on the line before its
fence, naming what it goes after, lines separated by " / ":

    <!-- fragment; checked after: [[handler]] / name = "example" / on = ["upload.finished"] -->

A whole-file snippet is checked as the default configuration's [server], [store], [audit]
and [tls] sections followed by the snippet, in a folder made by `wharf init`. Files a reader
brings (public keys, a CA, a program) are made for the check when a snippet names them."""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from conftest import BIN, ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
FRAGMENT = re.compile(r"<!--\s*fragment;\s*checked after:(.*?)-->\s*$", re.S)
# Options every command takes; the reference states them once, in its introduction.
COMMON = {"--help", "--config", "--version"}


def snippets():
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) != "toml":
                continue
            line = text.count("\n", 0, m.start()) + 1
            before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            fragment = FRAGMENT.search(before)
            prefix = fragment.group(1).strip().replace(" / ", "\n") + "\n" if fragment else ""
            yield f"{doc.name}:{line}", prefix, m.group(2)


def secrets_for(text):
    """Values for the env: references a snippet makes (a strong password each)."""
    return {name: "Docs-Check-Passw0rd-7f3a9c" for name in re.findall(r'"env:([A-Z_][A-Z0-9_]*)"', text)}


def reader_files(body, folder):
    """Makes the files a snippet expects the reader to bring; returns the snippet with any
    absolute program path pointed at a stand-in (nothing is written outside `folder`)."""
    for name in re.findall(r'"([\w./-]+\.pem)"', body):
        path = folder / name
        if name.startswith("/") or path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if "ca" in Path(name).stem:
            path.write_bytes((folder / "wharf-data" / "tls" / "certificate.pem").read_bytes())
        else:
            key = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                                 capture_output=True, check=True).stdout
            path.write_bytes(subprocess.run(["openssl", "pkey", "-pubout"], input=key, capture_output=True,
                                            check=True).stdout)
    pgp = [n for n in re.findall(r'"([\w./-]+\.asc)"', body) if not (folder / n).exists()]
    if pgp:
        home = f"/tmp/wharf-docs-gpg-{os.getpid()}-{time.time_ns()}"
        os.makedirs(home, mode=0o700)
        gpg = ["gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
        subprocess.run([*gpg, "--quick-gen-key", "Docs <docs@example.net>", "future-default", "default",
                        "never"], check=True, capture_output=True)
        for name in pgp:
            export = "--export-secret-keys" if "secret" in name else "--export"
            (folder / name).write_bytes(subprocess.run([*gpg, "--armor", export, "docs@example.net"],
                                                       check=True, capture_output=True).stdout)
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    for key in re.findall(r'^key = "([\w./-]+)"', body, re.M):
        path = folder / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    for known in re.findall(r'^known_hosts = "([\w./-]+)"', body, re.M):
        path = folder / known
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    for words in re.findall(r'^words = "([\w./-]+)"', body, re.M):
        path = folder / words
        if not path.exists():
            path.write_text("# a dictionary\nProject Falcon\n")
    for local in re.findall(r'^folder = "(/[^"]+)"', body, re.M):
        if not Path(local).is_dir():
            stand_in = folder / "folders" / Path(local).name
            stand_in.mkdir(parents=True, exist_ok=True)
            body = body.replace(f'"{local}"', f'"{stand_in}"')
    for program in re.findall(r'^program = "(/[^"]+)"', body, re.M):
        if not Path(program).exists():
            stand_in = folder / "programs" / Path(program).name
            stand_in.parent.mkdir(exist_ok=True)
            stand_in.write_text("#!/bin/sh\nexit 0\n")
            stand_in.chmod(0o755)
            body = body.replace(f'"{program}"', f'"{stand_in}"')
    return body


def run(args, cwd, env=None):
    return subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_every_toml_snippet_in_the_docs_is_accepted(tmp_path):
    assert run(["init", str(tmp_path)], tmp_path).returncode == 0
    default = (tmp_path / "wharf.toml").read_text()
    base = default[:default.index("[[service]]")]
    found, failures = 0, []
    for where, prefix, body in snippets():
        found += 1
        env = secrets_for(body)
        if re.search(r"^\[\[(account|group)\]\]", body, re.M):
            # An apply file: applied to a store of its own.
            data = tmp_path / f"apply-{found}"
            assert run(["init", str(data)], tmp_path).returncode == 0
            (data / "accounts.toml").write_text(prefix + body)
            r = run(["--config", str(data / "wharf.toml"), "apply", str(data / "accounts.toml")], data, env)
        else:
            body = reader_files(body, tmp_path)
            (tmp_path / "snippet.toml").write_text(base + prefix + body)
            r = run(["--config", str(tmp_path / "snippet.toml"), "check-config"], tmp_path, env)
        if r.returncode != 0:
            failures.append(f"{where}:\n{r.stdout}{r.stderr}")
    assert found >= 10, f"only {found} TOML snippets found"
    assert not failures, "\n".join(failures)


def help_text(*path):
    r = run([*path, "--help"], ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


def leaf_commands(path=()):
    """Every runnable command, as a tuple of words, with the options its --help lists."""
    text = help_text(*path)
    subcommands = []
    if "\nCommands:\n" in text:
        block = text.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
        subcommands = [line.split()[0] for line in block.splitlines() if line.strip()]
        subcommands = [c for c in subcommands if c != "help"]
    options = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", text, re.M)) - COMMON
    if not subcommands:
        return {path: options}
    # A command with subcommands may run itself too (`wharf backup FILE` beside `wharf
    # backup verify`): its own options say so.
    commands = {path: options} if options else {}
    for sub in subcommands:
        commands.update(leaf_commands((*path, sub)))
    return commands


def documented_commands():
    """The synopsis lines of docs/configuration.md: lines starting with `wharf ` in fences
    without a language (examples are in `sh` fences), with their continuation lines."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    commands = {}
    for m in FENCE.finditer(text):
        if m.group(1):
            continue
        current = None
        for line in m.group(2).splitlines():
            if line.startswith("wharf "):
                words, rest = [], line.split("#", 1)[0].split()[1:]
                while rest and re.fullmatch(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*", rest[0]):
                    words.append(rest.pop(0).split("|"))
                paths = [()]
                for alternatives in words:
                    paths = [(*p, a) for p in paths for a in alternatives]
                current = paths
                for p in paths:
                    commands.setdefault(p, set())
                options = rest
            elif current and line.startswith(" "):
                options = line.split("#", 1)[0].split()
            else:
                current = None
                continue
            flags = set(re.findall(r"--[a-z][a-z0-9-]*", " ".join(options)))
            for p in current:
                commands[p] |= flags
    return commands


def test_the_command_reference_matches_help():
    actual = leaf_commands()
    documented = documented_commands()
    assert len(actual) > 20, actual
    problems = []
    for path, options in sorted(actual.items()):
        name = "wharf " + " ".join(path)
        if path not in documented:
            problems.append(f"{name}: not in docs/configuration.md")
            continue
        for flag in sorted(options - documented[path]):
            problems.append(f"{name}: {flag} is in --help but not in the docs")
        for flag in sorted(documented[path] - options - COMMON):
            problems.append(f"{name}: {flag} is in the docs but not in --help")
    for path in sorted(set(documented) - set(actual)):
        problems.append(f"wharf {' '.join(path)}: documented but not a command")
    assert not problems, "\n".join(problems)


def test_a_group_takes_no_expiry_and_the_cli_says_which_options_exist(tmp_path):
    assert run(["init", str(tmp_path)], tmp_path).returncode == 0
    config = str(tmp_path / "wharf.toml")
    r = run(["--config", config, "group", "add", "g1", "--expires", "2030-01-01"], tmp_path)
    assert r.returncode == 2 and "--expires" in r.stderr, r.stderr
    r = run(["--config", config, "group", "add", "g1", "--require-second-factor", "true"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = run(["--config", config, "group", "show", "g1", "--json"], tmp_path)
    assert '"require_second_factor": true' in r.stdout.replace('":true', '": true'), r.stdout
    # A literal password in an apply file: the error names the file and the entry.
    (tmp_path / "people.toml").write_text('[[account]]\nname = "acme"\npassword = "Literal-Secret-99"\n')
    r = run(["--config", config, "apply", str(tmp_path / "people.toml")], tmp_path)
    assert r.returncode != 0
    assert "people.toml: account acme: password:" in r.stderr and "literal password" in r.stderr, r.stderr
