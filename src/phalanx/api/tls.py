"""TLS for the API: a self-signed certificate made on first start, when the server binds an
address other than loopback and was given no certificate.

The pair lives in the data dir (``tls.crt`` 0644, ``tls.key`` 0600) and is reused at the next
start; it names ``localhost``, the loopback addresses, this machine's host name and the bound
address, and is valid for ten years. ``server.json`` names the certificate as ``ca_file`` so
that the client and CLI on this machine trust it; other machines need a copy (or a
certificate from your own CA with ``--tls-cert/--tls-key``). Must not import client or cli.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` listens on loopback only (127.0.0.0/8, ::1, localhost)."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _names(host: str) -> tuple[list[str], list[str]]:
    dns = ["localhost", socket.gethostname()]
    ips = ["127.0.0.1", "::1"]
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host:
            dns.append(host)
    else:
        if not address.is_unspecified:
            ips.append(str(address))
    return sorted(set(dns)), sorted(set(ips))


def self_signed_pair(data_dir: Path, host: str) -> tuple[Path, Path]:
    """(certificate, key) in ``data_dir``: the ones there, else a new self-signed pair for
    ``host`` (an ECDSA P-256 key)."""
    cert_path, key_path = data_dir / CERT_FILE, data_dir / KEY_FILE
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = _names(host)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"phalanx {socket.gethostname()}")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    alt_names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
