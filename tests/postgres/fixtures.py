# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pytest fixtures for a real PostgreSQL server. Import them into a conftest.py::

    from tests.postgres.fixtures import postgres  # noqa: F401

``postgres`` (session scope) runs Debian's PostgreSQL (the ``postgresql`` package, which
``make setup`` installs as root): ``initdb`` in a new temporary directory, ``postgres`` on
127.0.0.1 with a free port and its socket in that directory, as an unprivileged user (the
``postgres`` account, else ``nobody``, when the tests run as root). Host connections need a
password (scram-sha-256); the role ``eminfra`` owns the database ``tfstate``. The server is
stopped and its directory removed at the end of the session. Without the binaries the tests
that need it are skipped, with that reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass

import pytest

ROLE = 'eminfra'
DATABASE = 'tfstate'


def find_bindir() -> str | None:
    """The directory with initdb, pg_ctl and postgres: Debian's newest version, else PATH."""
    for bindir in sorted(glob.glob('/usr/lib/postgresql/*/bin'), key=lambda p: int(p.split('/')[-2]), reverse=True):
        if all(os.access(os.path.join(bindir, tool), os.X_OK) for tool in ('initdb', 'pg_ctl', 'postgres')):
            return bindir
    found = shutil.which('pg_ctl')
    if found and shutil.which('initdb') and shutil.which('postgres'):
        return os.path.dirname(found)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on (for the unreachable-database case)."""
    return free_port()


@dataclass
class PostgresServer:
    """A running server: its port, directory and the eminfra role's password."""

    bindir: str
    base: str
    port: int
    password: str
    user: str | None
    version: str = ''

    def conn_str(self, password: str | None = None, port: int | None = None, database: str = DATABASE) -> str:
        return (f'postgres://{ROLE}:{password or self.password}@127.0.0.1:{port or self.port}/{database}'
                '?sslmode=disable')

    def psql(self, sql: str) -> str:
        """Run SQL as the superuser over the server's own socket (trust, local only)."""
        proc = subprocess.run(['psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', self.base,
                               '-p', str(self.port), '-U', 'postgres', '-d', 'postgres', '-c', sql],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f'psql failed: {proc.stderr}')
        return proc.stdout

    def sql_in(self, database: str, sql: str) -> str:
        proc = subprocess.run(['psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', self.base,
                               '-p', str(self.port), '-U', 'postgres', '-d', database, '-c', sql],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f'psql failed: {proc.stderr}')
        return proc.stdout


def _run_as(user: str | None):
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {'user': entry.pw_uid, 'group': entry.pw_gid, 'extra_groups': []}


def start(bindir: str) -> PostgresServer:
    user = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        for name in ('postgres', 'nobody'):
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            user = name
            break
    base = tempfile.mkdtemp(prefix='eminfra-pg-')
    as_user = _run_as(user)
    if user:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    os.chmod(base, 0o700)
    env = dict(os.environ, LC_ALL='C.UTF-8', HOME=base)
    data = os.path.join(base, 'data')
    subprocess.run([os.path.join(bindir, 'initdb'), '-D', data, '-U', 'postgres', '--auth-local=trust',
                    '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-instructions'],
                   cwd=base, env=env, capture_output=True, text=True, timeout=300, check=True, **as_user)
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c max_connections=40"
    proc = subprocess.run([os.path.join(bindir, 'pg_ctl'), '-D', data, '-o', options, '-l',
                           os.path.join(base, 'server.log'), '-w', '-t', '120', 'start'],
                          cwd=base, env=env, capture_output=True, text=True, timeout=180, check=False, **as_user)
    if proc.returncode != 0:
        log = os.path.join(base, 'server.log')
        detail = open(log, encoding='utf-8').read() if os.path.exists(log) else ''  # noqa: SIM115
        raise RuntimeError(f'PostgreSQL did not start: {proc.stderr}\n{detail}')
    server = PostgresServer(bindir=bindir, base=base, port=port, password=secrets.token_hex(12), user=user)
    server.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.password}'")
    server.psql(f'CREATE DATABASE {DATABASE} OWNER {ROLE}')
    server.version = server.psql('SHOW server_version').strip()
    return server


def stop(server: PostgresServer) -> None:
    subprocess.run([os.path.join(server.bindir, 'pg_ctl'), '-D', os.path.join(server.base, 'data'), '-m', 'fast',
                    '-w', 'stop'], cwd=server.base, capture_output=True, timeout=120, check=False,
                   **_run_as(server.user))
    shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture(scope='session')
def postgres():
    bindir = find_bindir()
    if not bindir:
        pytest.skip('PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed: Debian package '
                    'postgresql (make setup installs it as root)')
    if not shutil.which('psql'):
        pytest.skip('psql is not installed: Debian package postgresql-client')
    server = start(bindir)
    yield server
    stop(server)
