"""Database fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL is the machine's own cluster (Debian's postgresql-common layout),
started here if it is down; `TWINSTREAM_TEST_POSTGRES_URL` points the tests at
another server instead. A missing PostgreSQL fails the run rather than skipping
it, so a green suite always means both backends were exercised.
"""

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import URL, make_url

from pipeline.store.engine import make_engine

POSTGRES_URL_ENV = "TWINSTREAM_TEST_POSTGRES_URL"
TEST_ROLE = "twinstream"
TEST_DATABASE = "twinstream_test"


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int
    status: str
    owner: str


def _clusters() -> list[Cluster]:
    if shutil.which("pg_lsclusters") is None:
        pytest.fail(
            "PostgreSQL is not installed (no pg_lsclusters): install the postgresql "
            f"package, or set {POSTGRES_URL_ENV} to a server the tests may use"
        )
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], check=True, capture_output=True, text=True
    ).stdout
    clusters = []
    for line in listing.splitlines():
        version, name, port, status, owner, *_ = line.split()
        clusters.append(Cluster(version, name, int(port), status, owner))
    if not clusters:
        pytest.fail("PostgreSQL is installed but has no cluster: run pg_createcluster")
    return clusters


def _as_user(user: str, *command: str) -> list[str]:
    """`command` run as `user`: runuser when we are root, else password-less sudo."""
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *command]
    return ["sudo", "-n", "-u", user, *command]


def _psql(cluster: Cluster, sql: str) -> str:
    command = _as_user(
        cluster.owner,
        "psql",
        "--port",
        str(cluster.port),
        "--dbname",
        "postgres",
        "--no-align",
        "--tuples-only",
        "--set",
        "ON_ERROR_STOP=1",
        "--command",
        sql,
    )
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def _prepare_local_cluster() -> str:
    """Start the first local cluster if needed and ensure the test role and database."""
    clusters = _clusters()
    cluster = next((c for c in clusters if c.status.startswith("online")), clusters[0])
    if not cluster.status.startswith("online"):
        subprocess.run(
            _as_user(cluster.owner, "pg_ctlcluster", cluster.version, cluster.name, "start"),
            check=True,
        )
    role_exists = _psql(cluster, f"SELECT 1 FROM pg_roles WHERE rolname = '{TEST_ROLE}'")
    # ALTER on an existing role resets a drifted password, so reruns always log in.
    verb = "ALTER" if role_exists else "CREATE"
    _psql(cluster, f"{verb} ROLE {TEST_ROLE} LOGIN PASSWORD '{TEST_ROLE}'")
    if not _psql(cluster, f"SELECT 1 FROM pg_database WHERE datname = '{TEST_DATABASE}'"):
        _psql(cluster, f"CREATE DATABASE {TEST_DATABASE} OWNER {TEST_ROLE}")
    url = URL.create(
        "postgresql+psycopg",
        username=TEST_ROLE,
        password=TEST_ROLE,
        host="127.0.0.1",
        port=cluster.port,
        database=TEST_DATABASE,
    )
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """A PostgreSQL database the tests may create schemas in."""
    return os.environ.get(POSTGRES_URL_ENV) or _prepare_local_cluster()


@pytest.fixture
def postgresql_url(postgres_server_url: str) -> Iterator[str]:
    """A URL whose connections live in a fresh schema, dropped after the test.

    A schema per test (through libpq's `options=-csearch_path=…`) isolates
    tests without touching what else the database holds, which matters when
    the URL is an outside server.
    """
    schema = f"test_{uuid.uuid4().hex}"
    admin = make_engine(postgres_server_url)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(postgres_server_url).update_query_dict(
            {"options": f"-csearch_path={schema}"}
        )
        yield url.render_as_string(hide_password=False)
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state/twinstream.db"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database, once per backend."""
    return request.getfixturevalue(f"{request.param}_url")
