"""TLS on the proxy listener (docs/reference.md §3 `server.tls_cert_file` /
`tls_key_file`, rustls): boto3 with `endpoint_url=https://...` and the
sidecar's certificate as its trust root calls through it exactly as over
plain HTTP (requests and event streams); a client that does not trust the
certificate, or that speaks plain HTTP to the TLS port, gets nothing and
nothing reaches upstream. The admin listener stays plain HTTP."""

from __future__ import annotations

import datetime
import ipaddress

import botocore.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import harness


def self_signed(tmp_path):
    """A P-256 certificate for 127.0.0.1 / localhost and its PKCS#8 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenantgate-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_sidecar(start_sidecar_fn, tmp_path):
    cert, key = self_signed(tmp_path)
    sc = start_sidecar_fn({"server": {"tls_cert_file": str(cert), "tls_key_file": str(key)}}, name="tls")
    return sc, sc.url.replace("http://", "https://"), cert


def test_boto3_calls_through_the_tls_listener(tls_sidecar, mint, fake_aws, creds):
    """docs/reference.md §3 `server.tls_cert_file`/`tls_key_file`: the same requests, event
    streams and denials as over plain HTTP; the admin listener (§9) stays
    plain HTTP."""
    sc, url, cert = tls_sidecar
    c = harness.make_client(url, "bedrock-runtime", mint("acme", "alice"), verify=str(cert))
    out = c.converse(**harness.converse_args())
    assert out["output"]["message"]["content"][0]["text"]
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    fake_aws.reset()
    resp = c.converse_stream(**harness.converse_args())
    events = list(resp["stream"])
    assert "messageStop" in events[-1] or "metadata" in events[-1], events
    assert len(fake_aws.recorded("ConverseStream")) == 1
    # Denials are answered over TLS the same way.
    harness.expect_client_error(c, lambda: c.converse(**harness.converse_args(model="amazon.nova-pro-v1:0")),
                                403, "model_not_allowed")
    # The admin listener is unchanged (plain HTTP, probes and metrics).
    assert harness.http_request("GET", sc.admin_url + "/readyz").status == 200


def test_untrusted_certificate_and_plain_http_get_nothing(tls_sidecar, mint, fake_aws):
    """docs/reference.md §3 TLS listener, failing closed: a client that does not trust the
    certificate, or speaks plain HTTP to the TLS port, gets no answer and
    nothing reaches upstream."""
    sc, url, cert = tls_sidecar
    fake_aws.reset()
    untrusting = harness.make_client(url, "bedrock-runtime", mint("acme", "alice"))
    with pytest.raises(botocore.exceptions.SSLError):
        untrusting.converse(**harness.converse_args())
    plain = harness.make_client(sc.url, "bedrock-runtime", mint("acme", "alice"))
    with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ReadTimeoutError)):
        plain.converse(**harness.converse_args())
    harness.assert_nothing_upstream(fake_aws)


def test_unreadable_certificate_is_a_clear_start_up_error(start_sidecar_fn, tmp_path):
    """docs/reference.md §3: a certificate or key that cannot be loaded stops the start
    with an error naming the file (never a listener without TLS)."""
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    key = tmp_path / "missing.key"
    with pytest.raises(harness.SidecarFailed) as err:
        start_sidecar_fn({"server": {"tls_cert_file": str(bad), "tls_key_file": str(key)}}, name="badtls")
    assert "not-a-cert.pem" in str(err.value) or "missing.key" in str(err.value), err.value
