"""DICOM TLS on loopback: the listener with a self-signed certificate, the C-STORE sink
verifying it (and presenting its own when the listener requires client certificates)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pydicom
import pytest

from tests.pacs.scu import InProcessListener, echo, wait, worklist
from triage.errors import ConfigError
from triage.pacs.report import CStoreSink, RejectedError, create_sink
from triage.pacs.tls import TlsConfig


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def certs(tmp_path) -> dict[str, Path]:
    pytest.importorskip("cryptography")
    server_cert, server_key = _self_signed(tmp_path, "listener")
    client_cert, client_key = _self_signed(tmp_path, "sender")
    return {"server_cert": server_cert, "server_key": server_key,
            "client_cert": client_cert, "client_key": client_key}


def test_tls_listener_and_sink(certs, pacs_export, tiny_model, pacs_router, tmp_path):
    paths = sorted(p for p in pacs_export.rglob("*") if p.suffix != ".json" and p.is_file())
    datasets = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(path))
        except pydicom.errors.InvalidDicomError:
            continue
    uid = datasets[0].StudyInstanceUID
    study = [ds for ds in datasets if ds.StudyInstanceUID == uid]
    out = tmp_path / "out"
    tls = TlsConfig(certs["server_cert"], certs["server_key"], ca=certs["client_cert"])
    peer = InProcessListener(out, tiny_model, pacs_router)
    peer.listener.config.tls = tls
    peer.thread.start()
    try:
        wait(lambda: (peer.listener.server is not None) or not peer.thread.is_alive(), 30,
             "the listener")
        assert not echo(peer.port)  # plain TCP: no association
        target = (f"dicom://TRIAGE@127.0.0.1:{peer.port}?tls-ca={certs['server_cert']}"
                  f"&tls-cert={certs['client_cert']}&tls-key={certs['client_key']}")
        sink = create_sink(target)
        assert isinstance(sink, CStoreSink) and sink.description.endswith("over TLS")
        for ds in study:
            sink.send(ds)
        wait(lambda: uid in worklist(out), 60, "the triage of the study sent over TLS")
        # a client without a certificate, or one not trusting ours: no association
        for bad in (f"dicom://TRIAGE@127.0.0.1:{peer.port}?tls-ca={certs['server_cert']}",
                    f"dicom://TRIAGE@127.0.0.1:{peer.port}?tls=1"
                    f"&tls-cert={certs['client_cert']}&tls-key={certs['client_key']}"):
            with pytest.raises((ConnectionError, RejectedError)):
                create_sink(bad).send(study[0])
    finally:
        peer.__exit__()
    assert not peer.errors


def test_tls_settings_are_checked(certs, tmp_path):
    with pytest.raises(ConfigError, match="both a certificate and its key"):
        TlsConfig(certs["server_cert"])
    with pytest.raises(ConfigError, match="does not exist"):
        TlsConfig(ca=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="do not load"):
        TlsConfig(certs["server_cert"], certs["client_key"]).server_context()
    with pytest.raises(ConfigError, match="unknown option"):
        create_sink("dicom://PACS@127.0.0.1:104?tls-cafile=x")
