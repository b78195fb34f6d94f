"""TLS and mutual TLS between real sender sessions and a real receiver, with throwaway certificates."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest

from latentlink.receiver.server import create_server
from latentlink.sender.cli import explain_failure
from latentlink.sender.session import send_images
from latentlink.shared.image_io import find_sources
from latentlink.shared.tls import channel_credentials, server_credentials
from tests.conftest import SAMPLES

x509 = pytest.importorskip("cryptography.x509", reason="cryptography is in the test extra")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _issue(folder: Path, name: str, issuer=None, server: bool = False):
    """Writes name.pem / name.key: a CA when issuer is None, else a leaf signed by issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    ca = _issue(folder, "ca")
    _issue(folder, "receiver", ca, server=True)
    _issue(folder, "sender", ca)
    _issue(folder, "other-ca")
    return folder


def _serve(tmp_path: Path, pki: Path, mutual: bool = False):
    credentials = server_credentials(pki / "receiver.pem", pki / "receiver.key", pki / "ca.pem" if mutual else None)
    # Both loopback families listen: whichever a client tries last, it meets this receiver.
    server, port = create_server("localhost:0", tmp_path / "out", tmp_path / "models", "cpu", None, credentials)
    server.start()
    return server, f"localhost:{port}"


def _send(address: str, encoder, credentials=None):
    return send_images(address, find_sources(SAMPLES, (28, 28))[:3], encoder, credentials=credentials)


def test_tls_session_with_the_right_ca_delivers(tmp_path, pki, encoder):
    server, address = _serve(tmp_path, pki)
    try:
        assert _send(address, encoder, channel_credentials(pki / "ca.pem")).ok
    finally:
        server.stop(None)


@pytest.mark.parametrize("client", ["plaintext", "wrong-ca"])
def test_plaintext_or_untrusted_sender_is_refused(tmp_path, pki, encoder, client):
    server, address = _serve(tmp_path, pki)
    credentials = None if client == "plaintext" else channel_credentials(pki / "other-ca.pem")
    try:
        report = _send(address, encoder, credentials)
    finally:
        server.stop(None)
    advice = explain_failure(report.failure, address, tls=client != "plaintext")
    assert ("TLS handshake" if client == "wrong-ca" else "pass --tls-ca") in advice
    assert not report.written and len(report.failed) == 3
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_mutual_tls_needs_a_client_certificate(tmp_path, pki, encoder):
    server, address = _serve(tmp_path, pki, mutual=True)
    try:
        without = _send(address, encoder, channel_credentials(pki / "ca.pem"))
        with_cert = _send(address, encoder, channel_credentials(pki / "ca.pem", pki / "sender.pem", pki / "sender.key"))
    finally:
        server.stop(None)
    assert without.error and not without.written
    assert with_cert.ok
