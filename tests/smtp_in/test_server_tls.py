"""STARTTLS certificates (issue 3, point 1): configured ones, and the self-signed default."""

from __future__ import annotations

import shutil
import smtplib
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from postroom.errors import ConfigurationError
from postroom.settings import Settings
from smtp_in.tls import self_signed_path, server_context
from tests.support.services import require
from tests.support.smtp_server import running_smtp


def openssl_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate and key made by openssl, as an administrator would bring them."""
    require(shutil.which("openssl") is not None, "openssl is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def served_common_name(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.remote.test")
        client.starttls(context=ssl._create_unverified_context())
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_the_configured_certificate_is_served_on_both_ports(tmp_path: Path) -> None:
    cert, key = openssl_certificate(tmp_path, "mail.configured.test")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with running_smtp(data_dir, "example.test", tls_cert_file=cert, tls_key_file=key) as server:
        assert served_common_name(server.smtp_port) == "mail.configured.test"
        assert served_common_name(server.submission_port) == "mail.configured.test"
    assert not self_signed_path(server.settings).exists(), "nothing generated when configured"


def test_the_self_signed_certificate_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, hostname="mx.first.test")
    server_context(settings)
    first = self_signed_path(settings).read_bytes()
    server_context(settings)
    assert self_signed_path(settings).read_bytes() == first, "restarts keep the certificate"


def test_a_certificate_without_its_key_is_a_configuration_error(tmp_path: Path) -> None:
    cert, _ = openssl_certificate(tmp_path, "half.test")
    with pytest.raises(ConfigurationError, match="POSTROOM_TLS_KEY_FILE"):
        server_context(Settings(data_dir=tmp_path, tls_cert_file=cert))


def test_an_unreadable_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="cannot load the TLS certificate"):
        server_context(Settings(data_dir=tmp_path, tls_cert_file=broken, tls_key_file=broken))
