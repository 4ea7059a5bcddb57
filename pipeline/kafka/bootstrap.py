"""Why a Kafka client could not bootstrap, in words an operator can act on.

kafka-python retries a refused password or an untrusted certificate until its
bootstrap timeout and then raises a bare "Unable to bootstrap"; the cause only
reaches its log. This collects that cause while a client is being built.
"""

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError

from pipeline.settings import Settings

# kafka-python logs each failed bootstrap attempt here, with the exception as an argument.
ATTEMPTS_LOGGER = "kafka.net.manager"
# kafka-python's reason when the broker closed the connection. It drops a response that
# arrives together with the close, which is how brokers answer a refused login.
DISCONNECTED = "socket disconnected"


class KafkaBootstrapError(KafkaTimeoutError):
    """No bootstrap server would talk to this client; the message says why."""


class _Attempts(logging.Handler):
    """Counts the failures kafka-python logs while it retries a bootstrap."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.failures: Counter[str] = Counter()
        self.logins: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        for error in (arg for arg in args if isinstance(arg, Exception)):
            reason = str(error.args[0]) if error.args else type(error).__name__
            self.failures[reason] += 1
            if isinstance(error, SaslAuthenticationFailedError):
                self.logins[reason] += 1


@contextmanager
def explained(settings: Settings) -> Iterator[None]:
    """Raise KafkaBootstrapError naming the cause where a client built in this block could
    not bootstrap."""
    attempts = _Attempts()
    logger = logging.getLogger(ATTEMPTS_LOGGER)
    logger.addHandler(attempts)
    try:
        yield
    except KafkaTimeoutError as timeout:
        raise KafkaBootstrapError(_explanation(settings, attempts)) from timeout
    finally:
        logger.removeHandler(attempts)


def _explanation(settings: Settings, attempts: _Attempts) -> str:
    where = f"Kafka at {settings.kafka_bootstrap} ({settings.kafka_security_protocol})"
    # ssl's errors read "[SSL: CERTIFICATE_VERIFY_FAILED] ...", wrapped by kafka-python.
    tls = Counter({reason: n for reason, n in attempts.failures.items() if "[SSL" in reason})
    if tls:
        return (
            f"{where} failed the TLS handshake: {_most_common(tls)}. Check "
            "TWINSTREAM_KAFKA_SSL_CAFILE (the CA that signed the brokers' certificates), "
            "TWINSTREAM_KAFKA_SSL_CHECK_HOSTNAME, and that the listener speaks TLS."
        )
    login = f"{where} refused the login of {settings.kafka_sasl_username!r} with "
    check_login = (
        "Check TWINSTREAM_KAFKA_SASL_USERNAME, TWINSTREAM_KAFKA_SASL_PASSWORD and "
        "TWINSTREAM_KAFKA_SASL_MECHANISM."
    )
    if attempts.logins:
        return f"{login}{settings.kafka_sasl_mechanism}: {_most_common(attempts.logins)}. " + (
            check_login
        )
    if not attempts.failures:
        return f"{where} did not answer; is it running and reachable?"
    reason = _most_common(attempts.failures)
    if reason == DISCONNECTED and settings.kafka_security_protocol.startswith("SASL_"):
        return (
            f"{login}{settings.kafka_sasl_mechanism}: it closed each connection during the "
            f"login, which is how brokers refuse a user name, password or mechanism. {check_login}"
        )
    return (
        f"{where} did not accept a connection: {reason}. Is it running, and does "
        "TWINSTREAM_KAFKA_SECURITY_PROTOCOL match its listener?"
    )


def _most_common(reasons: Counter[str]) -> str:
    return reasons.most_common(1)[0][0]
