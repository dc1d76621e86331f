"""A throwaway PostgreSQL cluster for the test session, run by an unprivileged OS user.

Why our own fixture and not pytest-postgresql: CI runs as root, PostgreSQL
refuses to run as root, and pytest-postgresql starts ``pg_ctl`` as the
current user with no way to switch. Here ``initdb`` and ``pg_ctl`` run
through ``runuser -u postgres`` when we are root (as the current user
otherwise), in a folder that user owns, on a free port of 127.0.0.1 with
``trust`` authentication. One cluster serves the whole session; tests get
fresh databases from it (``CREATE DATABASE`` takes a fraction of a second,
a cluster a few seconds).

The cluster has pgvector and plpython3u available. ``managed_db`` stands
for managed PostgreSQL: a database owned by role ``app``, which is no
superuser and so can neither create plpython3u nor functions in it;
pgvector is enabled there by the superuser, as a provider's console would.
Role ``reader`` is an ordinary role for privilege tests.

PostgreSQL comes from ``scripts/install_postgres.sh``. Without it these
tests skip, unless ``VECPLUG_TEST_POSTGRES=required`` (``scripts/test.sh``
sets it after installing), when they fail.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

HOST = "127.0.0.1"
SUPERUSER = "postgres"
REQUIRED = os.environ.get("VECPLUG_TEST_POSTGRES") == "required"


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/NN/bin with a server, pgvector and plpython3u, or $VECPLUG_PG_BIN."""
    if os.environ.get("VECPLUG_PG_BIN"):
        return Path(os.environ["VECPLUG_PG_BIN"])
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    for postgres in reversed(candidates):
        lib = Path(postgres).parent.parent / "lib"
        if (lib / "vector.so").exists() and (lib / "plpython3.so").exists():
            return Path(postgres).parent
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class Cluster:
    bin_dir: Path
    root: Path
    port: int
    os_user: str | None  # None: run as ourselves

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"host={HOST} port={self.port} dbname={dbname} user={user} connect_timeout=10"

    def connect(self, dbname: str = "postgres", user: str = SUPERUSER, autocommit: bool = True):
        import psycopg

        return psycopg.connect(self.dsn(dbname, user), autocommit=autocommit)

    def run_as_owner(self, argv: list[str], **options) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", self.os_user, "--"] if self.os_user else []
        return subprocess.run(prefix + argv, capture_output=True, text=True, **options)

    def execute(self, statements: str, dbname: str = "postgres", user: str = SUPERUSER) -> None:
        with self.connect(dbname, user) as conn:
            conn.execute(statements)

    def create_database(self, name: str, owner: str = SUPERUSER, extensions: tuple[str, ...] = ()) -> str:
        """A fresh database (dropped first if a previous test left one); returns its name."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                sql.Identifier(name), sql.Identifier(owner)))
        with self.connect(name) as conn:
            for extension in extensions:
                conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension)))
        return name

    def log_tail(self, characters: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError as error:
            return f"(no log: {error})"

    def stop(self) -> None:
        self.run_as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                          timeout=60)


def start_cluster() -> Cluster:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = ("PostgreSQL with pgvector and plpython3u is not installed: run ./scripts/install_postgres.sh "
                   "(as root), or ./scripts/test.sh, which does")
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    os_user = SUPERUSER if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="vecplug-pg-"))
    if os_user:
        account = pwd.getpwnam(os_user)
        os.chown(root, account.pw_uid, account.pw_gid)
    cluster = Cluster(bin_dir, root, free_port(), os_user)
    initdb = cluster.run_as_owner([str(bin_dir / "initdb"), "-D", str(cluster.data_dir), "-U", SUPERUSER,
                                   "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"], timeout=120)
    if initdb.returncode:
        raise RuntimeError(f"initdb failed: {initdb.stderr[-3000:]}")
    for attempt in range(3):  # the free port may be taken between the probe and the start
        options = (f"-p {cluster.port} -k {root} -c listen_addresses={HOST} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
        started = cluster.run_as_owner([str(bin_dir / "pg_ctl"), "-D", str(cluster.data_dir), "-l",
                                        str(cluster.log_path), "-o", options, "-w", "-t", "60", "start"],
                                       timeout=120)
        if started.returncode == 0:
            break
        cluster.port = free_port()
    else:
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr[-2000:]}\n{cluster.log_tail()}")
    prepare_roles_and_databases(cluster)
    return cluster


def prepare_roles_and_databases(cluster: Cluster) -> None:
    cluster.execute("""
        CREATE ROLE app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
        CREATE ROLE reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    """)


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's PostgreSQL cluster (see the module docstring); stopped and removed at the end."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


def _database_name(request, prefix: str) -> str:
    return prefix + request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")[:50]


def _drop_database(cluster: Cluster, name: str) -> None:
    from psycopg import sql

    with cluster.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_db(pg_cluster, request):
    """A new, empty database for one test (pgvector available, not created), owned by the superuser."""
    name = pg_cluster.create_database(_database_name(request, "t_"))
    yield name
    _drop_database(pg_cluster, name)


@pytest.fixture
def managed_db(pg_cluster, request):
    """A new database standing for managed PostgreSQL: owned by non-superuser ``app``, pgvector enabled."""
    name = pg_cluster.create_database(_database_name(request, "m_"), owner="app", extensions=("vector",))
    yield name
    _drop_database(pg_cluster, name)
