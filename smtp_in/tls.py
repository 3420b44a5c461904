"""The TLS context behind STARTTLS on both SMTP ports.

A certificate and key from the settings when given; otherwise a self-signed certificate for the
hostname, generated on first start under ``<data dir>/tls/``. Mail servers do not verify each
other's certificates by default (RFC 7435, opportunistic security), so a self-signed one still
encrypts the MX port of a laptop install; production points the settings at a real one. Key and
certificate share one file, replaced atomically, so two processes starting at once can never
pair one's key with the other's certificate.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from postroom.durable_files import write_durably
from postroom.errors import ConfigurationError
from postroom.settings import Settings

__all__ = ["self_signed_path", "server_context"]


def self_signed_path(settings: Settings) -> Path:
    return settings.data_dir / "tls" / "selfsigned.pem"


def server_context(settings: Settings) -> ssl.SSLContext:
    """Blocking (it may generate an RSA key): call it in a thread from async code."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if (cert is None) != (key is None):
        raise ConfigurationError(
            "set both POSTROOM_TLS_CERT_FILE and POSTROOM_TLS_KEY_FILE, or neither "
            "(then a self-signed certificate is generated)"
        )
    if cert is None:
        cert = self_signed_path(settings)
        if not cert.exists():
            _write_self_signed(cert, settings.hostname)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load the TLS certificate {cert}"
            + (f" with key {key}" if key else "")
            + f": {exc}; fix POSTROOM_TLS_CERT_FILE/POSTROOM_TLS_KEY_FILE"
        ) from exc
    return context


def _write_self_signed(path: Path, hostname: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + certificate.public_bytes(serialization.Encoding.PEM)
    write_durably(path, pem)
