"""STS behind a private CA (docs/reference.md §3 `aws.ca_file`: extra trust roots for
every outbound TLS, AWS, STS and JWKS; §6 credentials; §8 503).

The fake STS here serves https with a certificate issued by a CA of the
test's own, trusted by no system store. With `aws.ca_file` naming that CA,
the per-tenant AssumeRole and the base chain's AssumeRoleWithWebIdentity
(IRSA) succeed; without it every request fails closed with 503
`credentials_unavailable` and nothing reaches Bedrock.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import harness
from fakests import FakeSts, BaseKeys, random_secret
from test_sts import converse
from test_sts_irsa import SIDECAR_ROLE, WEB_IDENTITY_TOKEN


def private_ca(tmp_path):
    """A private CA (written to ca.pem) and a server certificate it issued
    for 127.0.0.1 (server.pem / server.key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenantgate-test private CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-sts")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_path, cert_path, key_path


@pytest.fixture
def tls_sts(fake_aws, tmp_path):
    """A fake STS over https with a certificate from a private CA; yields
    (sts, path of the CA's PEM)."""
    ca_path, cert_path, key_path = private_ca(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    sts = FakeSts(fake_aws, ssl_context=ctx)
    assert sts.url.startswith("https://127.0.0.1:")
    yield sts, ca_path
    sts.close()


@pytest.fixture
def tls_base_keys(tls_sts):
    sts, _ = tls_sts
    k = BaseKeys("AKIABASE" + secrets.token_hex(6).upper(), random_secret())
    sts.register_base(k.access_key_id, k.secret_access_key)
    return k


def overrides(sts, ca_path=None, sts_in_config=True):
    o = harness.assume_role_overrides(sts.url if sts_in_config else None)
    if ca_path is not None:
        o["aws"]["ca_file"] = str(ca_path)
    return o


def test_assume_role_trusts_aws_ca_file(start_sidecar_fn, tls_sts, tls_base_keys, fake_aws, mint):
    """docs/reference.md §3 `aws.ca_file`, §6: the per-tenant AssumeRole goes to an STS
    endpoint whose certificate only the private CA vouches for; with the CA
    in `aws.ca_file` it succeeds and Bedrock sees the tenant's keys."""
    sts, ca_path = tls_sts
    sc = start_sidecar_fn(overrides(sts, ca_path), env=tls_base_keys.env())
    resp = converse(sc, mint("acme", "alice"), "acme", timeout=20)
    assert resp.status == 200, f"{resp!r}\nSTS calls:\n{sts.describe()}\n--- stderr ---\n{sc.stderr_tail(15)}"
    ar = [c for c in sts.assume_role_calls("acme") if c.issued]
    assert ar, sts.describe()
    assert all(c.signature_valid and c.access_key_id == tls_base_keys.access_key_id for c in ar)
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse")
    assert rec.access_key_id in {c.issued.access_key_id for c in ar}, rec.summary()


def test_without_ca_file_the_private_sts_fails_closed(start_sidecar_fn, tls_sts, tls_base_keys, fake_aws, mint):
    """docs/reference.md §6, §8: the same STS without `aws.ca_file`: the certificate is
    not trusted, so no AssumeRole completes and the request is 503
    `credentials_unavailable` with nothing upstream (no fallback to the
    sidecar's own keys)."""
    sts, _ = tls_sts
    sc = start_sidecar_fn(overrides(sts, None), env=tls_base_keys.env())
    resp = converse(sc, mint("acme", "alice"), "acme", timeout=20)
    harness.assert_tenantgate_error(resp, 503, "credentials_unavailable")
    assert sts.assume_role_calls() == [], sts.describe()
    harness.assert_nothing_upstream(fake_aws)


def test_irsa_web_identity_trusts_aws_ca_file(start_sidecar_fn, tls_sts, fake_aws, mint, tmp_path):
    """docs/reference.md §3 `aws.ca_file`, §6: with IRSA the base chain's
    AssumeRoleWithWebIdentity goes to the private-CA STS too (its endpoint
    from `aws.endpoints.sts`); both STS steps trust `aws.ca_file`."""
    sts, ca_path = tls_sts
    token_file = tmp_path / "token"
    token_file.write_text(WEB_IDENTITY_TOKEN)
    env = {
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_ROLE_ARN": SIDECAR_ROLE,
        "AWS_ROLE_SESSION_NAME": "tenantgate-pod-1",
    }
    sc = start_sidecar_fn(overrides(sts, ca_path), env=env)
    resp = converse(sc, mint("acme", "alice"), "acme", timeout=20)
    assert resp.status == 200, f"{resp!r}\nSTS calls:\n{sts.describe()}\n--- stderr ---\n{sc.stderr_tail(15)}"
    wi = [c for c in sts.recorded("AssumeRoleWithWebIdentity") if c.issued]
    assert wi, sts.describe()
    wi_keys = {c.issued.access_key_id for c in wi}
    ar = [c for c in sts.assume_role_calls("acme") if c.issued]
    assert ar and all(c.access_key_id in wi_keys for c in ar), sts.describe()
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse")
    assert rec.access_key_id in {c.issued.access_key_id for c in ar}, rec.summary()
