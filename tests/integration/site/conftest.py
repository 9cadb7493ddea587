# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for playbooks/site.yml and playbooks/diagnostics.yml end to end.

One pvesim and one artefact mirror (small artefacts) per session; each test gets its own state
root and a reset simulator. The intent is the loopback variant in intent/ beside this file: its
Ubuntu node util-01 is 127.77.0.40:22940, where ``ssh_node`` starts a real sshd (the
ansible_inventory step waits for its SSH banner). Its group is site_test, so ansible_base and
ansible_docker find no hosts in base and docker: the node roles would configure this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
from tests.ansible_run import ROOT, run_playbook
from tests.integration.hosts.conftest import SCRIPT as TESTHOSTS_SCRIPT, root_skip_reason
from tests.pvesim.fixtures import pvesim  # noqa: F401  pylint: disable=unused-import
from tests.pvesim.mirror_fixtures import TALOS_FACTORY_PATH, TALOS_QCOW2_PATH, UBUNTU_DIR, UBUNTU_PATH, MirrorProcess

HERE = os.path.dirname(os.path.abspath(__file__))
SITE = os.path.join(ROOT, 'playbooks', 'site.yml')
DIAGNOSTICS = os.path.join(ROOT, 'playbooks', 'diagnostics.yml')
INTENT_CLUSTER = os.path.join(HERE, 'intent', 'cluster.yaml')
INTENT_NODES = os.path.join(HERE, 'intent', 'nodes.yaml')
NODE_ADDRESS = ('127.77.0.40', 22940)
SSHD = '/usr/sbin/sshd'
ARTEFACT_SIZE = 1 << 20
# The variables the tests set for every run: locations only (the mirror's base URLs, the
# loopback intent, the key a node would get). Everything else is the roles' defaults; a test
# that needs another value for what it tests (a short SSH wait for a node that never answers)
# sets it for its own runs.
LOCATION_VARS = ('templates_ubuntu_base_url', 'templates_talos_factory_url', 'templates_intent_cluster_file',
                 'terraform_apply_intent_cluster_file', 'terraform_apply_intent_nodes_file',
                 'terraform_apply_ssh_public_key', 'proxmox_access_cluster_file', 'proxmox_access_nodes_file')


def serve_site_mirror():
    """The artefact mirror with 1 MiB qcow2 artefacts where the templates defaults fetch them, for a
    fixture to yield from: stopped when the fixture ends."""
    process = MirrorProcess.start(artefacts={UBUNTU_PATH: ARTEFACT_SIZE, TALOS_QCOW2_PATH: ARTEFACT_SIZE})
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope='session')
def site_mirror():
    yield from serve_site_mirror()


def terraform_found() -> bool:
    return bool(shutil.which('terraform') or shutil.which('tofu'))


class SshNode:
    """A real sshd on the intent's node address: what the ansible_inventory step waits for."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.hostkey = os.path.join(workdir, 'ssh_host_ed25519_key')
        if not os.path.exists(self.hostkey):
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', self.hostkey], check=True)

    def start(self) -> None:
        if self.proc and self.proc.poll() is None:
            return
        os.makedirs('/run/sshd', exist_ok=True)
        self.proc = subprocess.Popen([SSHD, '-D', '-e', '-f', '/dev/null', '-h', self.hostkey,
                                      '-o', f'ListenAddress={NODE_ADDRESS[0]}:{NODE_ADDRESS[1]}', '-o', 'PidFile=none',
                                      '-o', 'PasswordAuthentication=no', '-o', 'AuthorizedKeysFile=none'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        import socket
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(NODE_ADDRESS, timeout=1) as sock:
                    if sock.recv(64).startswith(b'SSH-2.0-'):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f'sshd did not answer on {NODE_ADDRESS}: {self.proc.stderr.read() if self.proc.poll() is not None else ""}')

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope='session')
def ssh_node(tmp_path_factory):
    if not os.path.exists(SSHD):
        pytest.skip('no sshd (make setup installs openssh-server)')
    node = SshNode(str(tmp_path_factory.mktemp('sshnode')))
    yield node
    node.stop()


class Site:
    """One state root wired to pvesim and the mirror; runs the playbooks against it."""

    def __init__(self, state: str, sim, mirror) -> None:
        self.state = state
        self.sim = sim
        self.mirror = mirror
        self.secret = sim.token('full')[1]

    @property
    def latest(self) -> dict[str, str]:
        return read_env_file(os.path.join(self.state, 'runs', 'latest.env'))

    def path(self, *parts: str) -> str:
        return os.path.join(self.state, *parts)

    def write_proxmox_env(self) -> None:
        os.makedirs(self.state, exist_ok=True)
        shutil.copy(self.sim.env_files['full'], self.path('proxmox.env'))
        os.chmod(self.path('proxmox.env'), 0o600)

    def variables(self, **extra) -> list[str]:
        values = {
            'templates_ubuntu_base_url': self.mirror.url_for(UBUNTU_DIR),
            'templates_talos_factory_url': self.mirror.url_for(TALOS_FACTORY_PATH),
            'templates_intent_cluster_file': INTENT_CLUSTER,
            'terraform_apply_intent_cluster_file': INTENT_CLUSTER,
            'terraform_apply_intent_nodes_file': INTENT_NODES,
            'terraform_apply_ssh_public_key': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnly site-test',
            'proxmox_access_cluster_file': INTENT_CLUSTER,
            'proxmox_access_nodes_file': INTENT_NODES,
        }
        assert set(values) == set(LOCATION_VARS)
        values.update(extra)
        return ['-e', json.dumps(values)]

    def run(self, *args: str, playbook: str = SITE, **extra):
        result = run_playbook(playbook, *self.variables(**extra), *args, state_dir=self.state)
        self.assert_no_secret(result)
        return result

    def popen(self, *args: str, **extra) -> subprocess.Popen:
        """Start site.yml without waiting (for the concurrency test)."""
        from tests.ansible_run import BIN, ansible_env
        argv = [os.path.join(BIN, 'ansible-playbook'), SITE, *self.variables(**extra), *args]
        return subprocess.Popen(argv, cwd=ROOT, env=ansible_env(self.state), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def files(self) -> dict[str, bytes]:
        out = {}
        for directory, dummy, names in os.walk(self.state):
            for name in names:
                path = os.path.join(directory, name)
                if os.path.isfile(path):
                    with open(path, 'rb') as handle:
                        out[os.path.relpath(path, self.state)] = handle.read()
        return out

    def assert_no_secret(self, result) -> None:
        """The token secret is in proxmox.env only: not in the output, task results or any other state file."""
        assert self.secret not in result.stdout + result.stderr + json.dumps(result.results)
        for name, data in self.files().items():
            if name != 'proxmox.env':
                assert self.secret.encode() not in data, f'the token secret is in {name}'


@pytest.fixture
def site(pvesim, site_mirror, tmp_path):  # noqa: F811
    if not terraform_found():
        pytest.skip('no terraform or tofu (make setup installs the embedded Terraform)')
    pvesim.reset()
    site_mirror.reset()
    state = tempfile.mkdtemp(prefix='state-', dir=str(tmp_path))
    project = Site(state, pvesim, site_mirror)
    project.write_proxmox_env()
    return project


@pytest.fixture
def lab(request, tmp_path):
    """SSH test hosts for the test module's intent (its ``INTENT_DIR``) on its own lab prefix (its
    ``PREFIX``): their key and known_hosts; taken down at the end."""
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    prefix, intent_dir = request.module.PREFIX, request.module.INTENT_DIR
    state_dir = str(tmp_path / 'lab')
    argv = [sys.executable, TESTHOSTS_SCRIPT, '--state-dir', state_dir, '--prefix', prefix]
    proc = subprocess.run([*argv, 'up', '--json', '--intent', intent_dir], capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        yield {'key': os.path.join(state_dir, 'id_ed25519'), 'known_hosts': os.path.join(state_dir, f'known_hosts-{prefix}')}
    finally:
        subprocess.run([*argv, 'down'], capture_output=True, text=True, timeout=300, check=False)


def summary_of(result) -> str:
    """The summary lines the run printed."""
    return '\n'.join(line for entry in result.task('Show the run summary') for line in entry['result'].get('msg', []))


def changed_tasks(result) -> list[str]:
    return [entry['task'] for entry in result.results if entry.get('status') == 'ok' and entry['result'].get('changed')]
