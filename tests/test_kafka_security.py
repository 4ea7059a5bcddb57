"""Managed Kafka: every client over SASL_SSL with SCRAM, against a real broker.

The broker is the embedded one with a SASL_SSL listener beside its plaintext one, a
certificate signed by a CA this module makes, and SCRAM users added through the admin
API. A whole `twinstream up` runs over that listener, configured the way an operator
would (environment variables), and an item goes produce -> ingest -> index -> search.
"""

import base64
import datetime
import ipaddress
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kafka.admin import UserScramCredentialUpsertion

from pipeline.data.asterisk import common_words, iter_asterisk
from pipeline.data.orl import iter_orl
from pipeline.kafka.bootstrap import KafkaBootstrapError
from pipeline.kafka.clients import (
    BOOTSTRAP_TIMEOUT_MS,
    make_admin,
    make_consumer,
    make_producer,
)
from pipeline.kafka.launcher import EmbeddedKafka, SecureListener
from pipeline.kafka.topics import ensure_topics
from pipeline.produce import produce_items
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.train.job import item_samples, train_and_register
from schemas.items import ITEM_TOPICS, Modality
from tests.fixtures_kafka import subscribe_when_known
from tests.fixtures_stack import INGEST_TIMEOUT_S, TEST_HTTP_PORT
from tests.fixtures_up import UpProcess, pipeline_state

# The plaintext listener (for adding users), the controller at +1 and SASL_SSL at +2.
SECURE_BROKER = os.environ.get("TWINSTREAM_TEST_SECURE_BROKER", "127.0.0.1:19192")
USER, PASSWORD = "twinstream-app", "scram-secret-1"
# A refusal surfaces when the client's bootstrap timeout runs out, never later.
FAIL_FAST_S = BOOTSTRAP_TIMEOUT_MS / 1000 + 3


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    broker_cert: Path
    broker_key: Path
    untrusted_ca: Path


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, signer
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return builder.sign(signer, hashes.SHA256())


def _self_signed_ca(subject: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    return _certificate(subject, key, None, key), key


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA, the broker's certificate it signs, and a second CA that signed nothing here."""
    folder = tmp_path_factory.mktemp("tls")
    ca, ca_key = _self_signed_ca("twinstream test CA")
    broker_key = ec.generate_private_key(ec.SECP256R1())
    files = TlsFiles(
        ca=folder / "ca.pem",
        broker_cert=folder / "broker.pem",
        broker_key=folder / "broker.key",
        untrusted_ca=folder / "untrusted-ca.pem",
    )
    files.ca.write_bytes(_pem(ca))
    files.broker_cert.write_bytes(_pem(_certificate("localhost", broker_key, ca, ca_key)))
    files.broker_key.write_bytes(
        broker_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.untrusted_ca.write_bytes(_pem(_self_signed_ca("some other CA")[0]))
    return files


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[Settings]:
    """Settings of a client of the SASL_SSL listener, as user USER with SCRAM-SHA-512."""
    host, port = SECURE_BROKER.rsplit(":", 1)
    secure_port = int(port) + 2
    # `twinstream up` writes its output beside the state directory.
    state_dir = tmp_path_factory.mktemp("twinstream-secured") / "state"
    broker_settings = Settings(state_dir=state_dir, kafka_bootstrap=SECURE_BROKER)
    broker = EmbeddedKafka(
        broker_settings, SecureListener(secure_port, tls.broker_cert, tls.broker_key)
    )
    broker.start()
    try:
        with make_admin(broker_settings) as admin:
            # The broker takes one alteration per user and request.
            added = [
                admin.alter_user_scram_credentials(
                    [UserScramCredentialUpsertion(USER, mechanism, PASSWORD)]
                )
                for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            ]
        assert added == [{USER: None}, {USER: None}]
        yield Settings(
            state_dir=broker_settings.state_dir,
            kafka_bootstrap=f"{host}:{secure_port}",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username=USER,
            kafka_sasl_password=PASSWORD,
            kafka_ssl_cafile=tls.ca,
            http_port=TEST_HTTP_PORT + 20,
            train_preset="quick",
            train_overrides={"epochs": 1},
        )
    finally:
        broker.stop()


def _with(settings: Settings, **changes) -> Settings:
    return Settings(**(settings.model_dump() | changes))


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_admin_producer_and_consumer_work_over_sasl_ssl(secured: Settings, mechanism: str):
    settings = _with(secured, kafka_sasl_mechanism=mechanism)
    ensure_topics(settings)
    topic = f"test.secured.{uuid.uuid4().hex[:8]}"
    with make_admin(settings) as admin:
        admin.create_topics({topic: {"num_partitions": 1}}, wait_for_metadata=True)
        assert set(ITEM_TOPICS.values()) < set(admin.list_topics())
    producer = make_producer(settings)
    producer.send(topic, key=b"k", value=mechanism.encode()).get(timeout=30)
    producer.close()
    consumer = make_consumer(settings, group_id=f"test-{uuid.uuid4().hex[:8]}")
    subscribe_when_known(consumer, topic)
    try:
        deadline = time.monotonic() + 30
        values: list[bytes] = []
        while not values and time.monotonic() < deadline:
            values = [r.value for batch in consumer.poll(1000).values() for r in batch]
        assert values == [mechanism.encode()]
    finally:
        consumer.close()


def _refusal(settings: Settings) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(KafkaBootstrapError) as refused:
        make_producer(settings)
    return str(refused.value), time.monotonic() - started


def test_a_wrong_password_fails_fast_and_says_so(secured: Settings):
    message, seconds = _refusal(_with(secured, kafka_sasl_password="not-the-password"))
    assert seconds < FAIL_FAST_S
    assert f"refused the login of {USER!r} with SCRAM-SHA-512" in message
    assert "TWINSTREAM_KAFKA_SASL_PASSWORD" in message
    assert "not-the-password" not in message


def test_an_untrusted_certificate_fails_fast_and_says_so(secured: Settings, tls: TlsFiles):
    message, seconds = _refusal(_with(secured, kafka_ssl_cafile=tls.untrusted_ca))
    assert seconds < FAIL_FAST_S
    assert "failed the TLS handshake" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "TWINSTREAM_KAFKA_SSL_CAFILE" in message


def test_sasl_without_credentials_is_refused_by_the_settings():
    with pytest.raises(ValueError, match="needs TWINSTREAM_KAFKA_SASL_USERNAME"):
        Settings(kafka_security_protocol="SASL_SSL")


def _train_small_models(settings: Settings) -> None:
    """One-epoch models on ten identities (two held out to score them): the path needs a
    model, not a good one."""
    store = MetadataStore.from_settings(settings)
    small = {
        Modality.FACE: [f for f in iter_orl() if f.label in {f"s{n}" for n in range(1, 11)}],
        Modality.AUDIO: list(iter_asterisk(words=common_words()[:10])),
    }
    for modality, items in small.items():
        samples = item_samples(modality, items)
        train_and_register(settings, store, modality, samples, activate=True)


def test_the_stack_runs_over_sasl_ssl_end_to_end(
    secured: Settings, monkeypatch: pytest.MonkeyPatch
):
    """`twinstream up` configured by environment: an item produced over SASL_SSL is indexed
    by the ingest actors and found by a search."""
    _train_small_models(secured)
    password = secured.kafka_sasl_password
    assert password is not None
    environment = {
        "TWINSTREAM_KAFKA_SECURITY_PROTOCOL": secured.kafka_security_protocol,
        "TWINSTREAM_KAFKA_SASL_MECHANISM": secured.kafka_sasl_mechanism,
        "TWINSTREAM_KAFKA_SASL_USERNAME": USER,
        "TWINSTREAM_KAFKA_SASL_PASSWORD": password.get_secret_value(),
        "TWINSTREAM_KAFKA_SSL_CAFILE": str(secured.kafka_ssl_cafile),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    up = UpProcess(secured, attempt=0)
    try:
        up.wait_ready()
        face = next(f for f in iter_orl() if f.label == "s20")
        produce_items(secured, [face])
        data = base64.b64encode(face.read_bytes()).decode()
        query = {"modality": "face", "item": {"data": data}, "k": 1}
        with httpx.Client(base_url=f"http://127.0.0.1:{secured.http_port}", timeout=60) as api:
            deadline = time.monotonic() + INGEST_TIMEOUT_S
            while True:
                response = api.post("/v1/search", json=query)
                assert response.status_code == 200, response.text
                matches = response.json()["matches"]
                if matches and matches[0]["id"] == face.id:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"{face.id} was not indexed: {matches}\n{pipeline_state(api, up)}")
                time.sleep(1)
        assert matches[0]["label"] == "s20"
    finally:
        up.stop()
