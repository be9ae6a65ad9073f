"""Test certificates: a CA and a server certificate it signs, made with openssl."""

import subprocess


def make_ca_and_leaf(folder, sans="IP:127.0.0.1"):
    """Writes ca.pem, ca.key, leaf.pem and leaf.key into `folder`; the leaf certificate
    names `sans` (an openssl subjectAltName value)."""
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=folder)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Wharf test CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=wharf-test-server")
    (folder / "leaf.ext").write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext")
