"""A throw-away certificate authority for TLS tests, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: object) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_test_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA in `folder` and a server certificate for 127.0.0.1 it signed; returns (ca, cert, key)."""
    ca, ca_key, cert, key, csr = (folder / n for n in ("ca.crt", "ca.key", "server.crt", "server.key", "server.csr"))
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("req", "-x509", *EC_KEY, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=emwatch test CA")
    _openssl("req", *EC_KEY, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
             "-days", "2", "-extfile", folder / "san.ext")
    return ca, cert, key


def make_client_cert(folder: Path, name: str) -> tuple[Path, Path]:
    """A client certificate for `name` signed by the CA make_test_ca put in `folder`; returns (cert, key)."""
    cert, key, csr = folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}.csr"
    _openssl("req", *EC_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", csr, "-CA", folder / "ca.crt", "-CAkey", folder / "ca.key", "-CAcreateserial",
             "-out", cert, "-days", "2")
    return cert, key
