# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the templates tests: the artefact mirror, pvesim, a throwaway HTTPS mirror."""

from __future__ import annotations

import datetime
import ipaddress

import pytest

from tests.pvesim.fixtures import pvesim  # noqa: F401  pylint: disable=unused-import
from tests.pvesim.mirror_fixtures import MirrorProcess, mirror  # noqa: F401  pylint: disable=unused-import


@pytest.fixture
def clean_mirror(mirror):  # noqa: F811  pylint: disable=redefined-outer-name
    """The session mirror with no faults and an empty request log."""
    mirror.reset()
    yield mirror
    mirror.reset()


def _self_signed(directory) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'throwaway mirror')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = directory / 'mirror-cert.pem'
    key_path = directory / 'mirror-key.pem'
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope='session')
def tls_mirror(tmp_path_factory):
    """A second mirror over HTTPS with a throwaway self-signed certificate: (mirror, cert path)."""
    directory = tmp_path_factory.mktemp('tls-mirror')
    cert, key = _self_signed(directory)
    process = MirrorProcess.start(root=str(directory / 'root'), artefacts={'/tls/image.qcow2': 1 << 20},
                                  extra_args=['--tls', cert, key], ca_path=cert)
    yield process, cert
    process.stop()
