"""The self-signed certificate for LAN tests: made once, reused, usable by ssl."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509

from signaling.tls import self_signed, server_context


def test_self_signed_certificate_covers_the_hosts_and_is_reused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, ["192.0.2.10", "meet.example"])
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "meet.example" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]
    assert key.stat().st_mode & 0o077 == 0  # the key is private
    assert isinstance(server_context(cert, key), ssl.SSLContext)
    before = cert.read_bytes()
    assert self_signed(tmp_path, ["192.0.2.10"]) == (cert, key)
    assert cert.read_bytes() == before  # not regenerated


def test_self_signed_files_are_private(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, ["192.0.2.10"])
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.parent.stat().st_mode & 0o777 == 0o700
