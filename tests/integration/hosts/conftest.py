# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures for the SSH test hosts (tests/hosts/testhosts.py): labs on their own prefixes and
/24s, so that they never meet a lab of the dev intent."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.integration._procs import proc_files

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = os.path.join(REPO, 'tests', 'hosts', 'testhosts.py')
TOOLS = ('ip', 'unshare', 'ssh', 'ssh-keygen', 'debootstrap')


def root_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return 'needs root: network namespaces, mounts and debootstrap'
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f'missing tools {", ".join(missing)}: run `make setup` as root'
    return None


requires_root = pytest.mark.skipif(root_skip_reason() is not None, reason=root_skip_reason() or '')


def load_testhosts():
    """tests/hosts/testhosts.py as a module (it is a script, run by path)."""
    spec = importlib.util.spec_from_file_location('testhosts_under_test', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


testhosts = load_testhosts()


class LabCli(testhosts.Lab):
    """Runs testhosts.py for one lab prefix and state directory (its paths: ``testhosts.Lab``)."""

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, SCRIPT, '--state-dir', self.state_dir, '--prefix', self.prefix, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f'testhosts {" ".join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}')
        return proc

    def up(self, *nodes: str, cidr: str) -> dict:
        return json.loads(self.run('up', '--json', '--cidr', cidr, *nodes).stdout)

    def down(self) -> dict:
        return json.loads(self.run('down').stdout)

    def ssh(self, address: str, command: str, user: str = 'root', check: bool = True) -> subprocess.CompletedProcess:
        argv = ['ssh', '-i', self.key, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
                '-o', f'UserKnownHostsFile={self.known_hosts}', '-o', 'StrictHostKeyChecking=yes',
                '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=10', f'{user}@{address}', command]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f'ssh {user}@{address} {command!r} exited {proc.returncode}: {proc.stderr}')
        return proc


def leftovers(prefix: str, state_dir: str) -> dict:
    """Everything of a lab prefix the machine still holds."""
    netns = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True, check=False).stdout
    links = subprocess.run(['ip', '-o', 'link', 'show'], capture_output=True, text=True, check=False).stdout
    with open('/proc/self/mountinfo', encoding='utf-8') as handle:
        mounts = [line.split()[4] for line in handle if state_dir in line.split()[4] or f'/{prefix}-' in line]
    processes = []
    for pid, raw in proc_files('cmdline'):
        cmdline = raw.replace(b'\0', b' ').decode(errors='replace')
        try:
            root = os.readlink(f'/proc/{pid}/root')
        except OSError:
            continue
        if state_dir in cmdline or root.startswith(state_dir):
            processes.append((pid, cmdline))
    return {
        'netns': [line.split()[0] for line in netns.splitlines() if line.startswith(f'{prefix}-')],
        'links': re.findall(rf'^\d+: ({re.escape(prefix)}[^:@ ]*)', links, flags=re.M),
        'mounts': mounts,
        'processes': processes,
        'host_dirs': [d for d in os.listdir(state_dir) if d.startswith('hosts-')] if os.path.isdir(state_dir) else [],
    }


@pytest.fixture
def lab_factory(tmp_path):
    """LabCli objects whose labs are always taken down at the end."""
    labs: list[LabCli] = []

    def make(prefix: str) -> LabCli:
        lab = LabCli(str(tmp_path / 'state'), prefix)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.run('down', check=False)
