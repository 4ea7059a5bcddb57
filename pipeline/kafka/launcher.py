"""Runs a single-node Apache Kafka broker (KRaft, broker + controller) on loopback.

`make run` and `make test` need a broker on a fresh machine without Docker or a
Kafka install, so the launcher fetches the broker's jars with Maven and runs
them with the machine's Java. The broker's data, pid and log live under the
state directory, so topics and messages survive `stop`/`start`.
"""

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

from kafka.errors import KafkaError

from pipeline.kafka.clients import make_admin, message_limit_bytes
from pipeline.settings import Settings

POM = Path(__file__).with_name("pom.xml")
LOG4J_CONFIG = Path(__file__).with_name("log4j2.yaml")
JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true")
LOG_TAIL_LINES = 40


class KafkaLauncherError(RuntimeError):
    """The embedded broker could not be installed, started or stopped."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path


@dataclass(frozen=True)
class SecureListener:
    """A SASL_SSL listener beside the plaintext one, so tests can exercise the clients'
    TLS and SCRAM settings; users are added through the admin API on the plaintext one."""

    port: int
    certfile: Path  # PEM: the broker's certificate, then any intermediate CAs
    keyfile: Path  # PEM: its unencrypted PKCS#8 private key

    def properties(self) -> dict[str, str]:
        scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return {
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram_login,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram_login,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.certificate.chain": _pem_property(self.certfile),
            "ssl.keystore.key": _pem_property(self.keyfile),
        }


class EmbeddedKafka:
    """The broker that belongs to one state directory."""

    def __init__(self, settings: Settings, secure: SecureListener | None = None) -> None:
        self.settings = settings
        self.secure = secure

    @property
    def address(self) -> tuple[str, int]:
        """Host and port of the client listener; the controller listens on port + 1."""
        host, _, port = self.settings.kafka_bootstrap.strip().rpartition(":")
        if not host or not port.isdigit():
            raise KafkaLauncherError(
                f"TWINSTREAM_KAFKA_BOOTSTRAP={self.settings.kafka_bootstrap!r} is not host:port; "
                "the embedded broker listens on exactly one address"
            )
        return host, int(port)

    @property
    def jars_dir(self) -> Path:
        return self.settings.kafka_dir / "lib"

    @property
    def data_dir(self) -> Path:
        return self.settings.kafka_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.settings.kafka_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.settings.kafka_dir / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.settings.kafka_dir / "server.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.settings.kafka_dir / "cluster.id"

    def ensure_jars(self) -> Path:
        """Fetch the broker's jars unless the ones there match the packaged pom.

        The pom's hash is stamped inside the jar folder, and the folder is filled
        beside it and swapped in whole, so an interrupted download is never
        mistaken for a complete one.
        """
        digest = hashlib.sha256(POM.read_bytes()).hexdigest()
        stamp = self.jars_dir / ".pom-sha256"
        if stamp.is_file() and stamp.read_text().strip() == digest:
            return self.jars_dir
        mvn = _require_tool("mvn", "Maven (mvn) is needed to download the Kafka broker's jars")
        self.settings.kafka_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="lib-", dir=self.settings.kafka_dir))
        try:
            fetched = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-Dstyle.color=never",
                    "-f",
                    str(POM),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={staging}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fetched.returncode != 0:
                raise KafkaLauncherError(
                    "mvn could not download the Kafka broker's jars:\n"
                    + _last_lines(fetched.stdout + fetched.stderr)
                )
            (staging / stamp.name).write_text(digest)
            shutil.rmtree(self.jars_dir, ignore_errors=True)
            staging.rename(self.jars_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.jars_dir

    def start(self, timeout: float = 90) -> None:
        """Start the broker and return once it answers metadata requests."""
        if not self.settings.kafka_embedded:
            raise KafkaLauncherError(
                f"TWINSTREAM_KAFKA_BOOTSTRAP={self.settings.kafka_bootstrap} with "
                f"TWINSTREAM_KAFKA_SECURITY_PROTOCOL={self.settings.kafka_security_protocol} "
                "names an existing cluster: the embedded broker only runs on this machine's "
                "loopback, for PLAINTEXT clients. Start that cluster yourself, or point the "
                "bootstrap at 127.0.0.1 without a security protocol to use the embedded one."
            )
        deadline = time.monotonic() + timeout
        pid = self._running_pid()
        if pid is None:
            if _port_answers(*self.address):
                raise KafkaLauncherError(
                    f"{self.settings.kafka_bootstrap} is already taken by a process that is not "
                    f"this state directory's broker ({self.settings.state_dir}); stop it or "
                    "choose another TWINSTREAM_KAFKA_BOOTSTRAP port."
                )
            pid = self._launch()
        self._wait_until_ready(pid, deadline)

    def stop(self, timeout: float = 30) -> None:
        """Stop the broker; a clean shutdown first, so no written data is lost."""
        pid = self._running_pid()
        if pid is not None:
            _signal(pid, signal.SIGTERM)
            if not _wait_for_exit(pid, timeout):
                _signal(pid, signal.SIGKILL)
                if not _wait_for_exit(pid, 10):
                    raise KafkaLauncherError(f"the Kafka broker (pid {pid}) survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> BrokerStatus:
        pid = self._running_pid()
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=self.settings.kafka_bootstrap,
            data_dir=self.data_dir,
        )

    def _launch(self) -> int:
        java = _require_tool("java", "Java 17+ (java) is needed to run the embedded Kafka broker")
        classpath = f"{self.ensure_jars().resolve()}{os.sep}*"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_properties()
        if not (self.data_dir / "meta.properties").is_file():
            self._format_storage(java, classpath)
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        with self.log_file.open("wb") as log:
            process = subprocess.Popen(
                [
                    java,
                    *JVM_OPTIONS,
                    f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(self.properties_file.resolve()),
                ],
                # A crashing JVM writes its hs_err file into the working directory.
                cwd=self.settings.kafka_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{process.pid}\n")
        return process.pid

    def _format_storage(self, java: str, classpath: str) -> None:
        formatted = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self._cluster_id(),
                "-c",
                str(self.properties_file.resolve()),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if formatted.returncode != 0:
            raise KafkaLauncherError(
                "formatting the Kafka storage failed:\n"
                + _last_lines(formatted.stdout + formatted.stderr)
            )

    def _cluster_id(self) -> str:
        """The id the storage was formatted with; it must never change afterwards."""
        if self.cluster_id_file.is_file():
            return self.cluster_id_file.read_text().strip()
        cluster_id = "-"
        while cluster_id.startswith("-"):
            # Kafka's own generator skips ids with a leading dash too: its
            # command-line tools would read such an id as an option.
            cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.cluster_id_file.write_text(f"{cluster_id}\n")
        return cluster_id

    def _write_properties(self) -> None:
        """Rewritten at every start so a changed port or size limit takes effect."""
        limit = message_limit_bytes(self.settings)
        host, port = self.address
        listener_host = f"{host}:{port}"
        controller_host = f"{host}:{port + 1}"
        client_listeners = [f"PLAINTEXT://{listener_host}"]
        protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        if self.secure is not None:
            client_listeners.append(f"SASL_SSL://{host}:{self.secure.port}")
            protocols += ",SASL_SSL:SASL_SSL"
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{controller_host}",
            "listeners": ",".join([*client_listeners, f"CONTROLLER://{controller_host}"]),
            "advertised.listeners": ",".join(client_listeners),
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": protocols,
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir.resolve()),
            # Topics come from ensure_topics with their settings; a typo in a
            # client must fail loudly instead of creating a stray topic.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(limit),
            "replica.fetch.max.bytes": str(limit),
            # A week of history, at most 2 GiB per partition: enough to replay
            # local experiments, bounded so a laptop's disk does not fill up.
            "log.retention.hours": "168",
            "log.retention.bytes": str(2 * 1024**3),
        }
        if self.secure is not None:
            properties |= self.secure.properties()
        self.properties_file.write_text(
            "".join(f"{key}={value}\n" for key, value in properties.items())
        )

    def _running_pid(self) -> int | None:
        """The broker's pid if the pid file names a live broker process."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_broker_process(pid) else None

    def _wait_until_ready(self, pid: int, deadline: float) -> None:
        while True:
            if not _is_broker_process(pid):
                self.pid_file.unlink(missing_ok=True)
                raise KafkaLauncherError(
                    f"the Kafka broker exited during start; the end of {self.log_file}:\n"
                    + self._log_tail()
                )
            if _port_answers(*self.address) and self._answers_metadata():
                return
            if time.monotonic() > deadline:
                raise KafkaLauncherError(
                    f"the Kafka broker (pid {pid}) did not answer on "
                    f"{self.settings.kafka_bootstrap} in time; the end of {self.log_file}:\n"
                    + self._log_tail()
                )
            time.sleep(0.25)

    def _answers_metadata(self) -> bool:
        try:
            with make_admin(self.settings, bootstrap_timeout_ms=2000) as admin:
                admin.list_topics()
        except KafkaError:
            return False
        return True

    def _log_tail(self) -> str:
        """The end of the broker log without stack frames, which would crowd out the
        exception messages and `Caused by` lines that say what went wrong."""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no broker log was written)"
        return _last_lines("\n".join(line for line in lines if not line.startswith("\t")))


def _require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KafkaLauncherError(
            f"{why}, but `{name}` is not on PATH. Install it, or set "
            "TWINSTREAM_KAFKA_BOOTSTRAP to an existing Kafka cluster."
        )
    return path


def _is_broker_process(pid: int) -> bool:
    """Whether `pid` is a live Kafka broker rather than an exited one or a reused pid."""
    with contextlib.suppress(ChildProcessError):
        # Reaps the broker if this process launched it and it has exited, so a
        # zombie does not pass for a running broker.
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if sys.platform != "linux":
        return True
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    # The command line reads empty for a moment while the process starts, so
    # only a non-empty one without the broker's class marks a reused pid.
    return state != "Z" and (not cmdline or b"kafka.Kafka" in cmdline)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have exited in the meantime
        os.kill(pid, signum)


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_broker_process(pid):
            return True
        time.sleep(0.1)
    return not _is_broker_process(pid)


def _port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=1):
            return True
    except OSError:
        return False


def _pem_property(path: Path) -> str:
    """A PEM file as one properties value: line breaks escaped, as Java's loader reads them."""
    return path.read_text().strip().replace("\n", "\\n\\\n")


def _last_lines(text: str) -> str:
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
