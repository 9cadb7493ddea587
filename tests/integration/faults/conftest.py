# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fault suite: playbooks/site.yml killed, interrupted and faulted at chosen moments.

It reuses the site suite's world (pvesim, the artefact mirror, the loopback sshd for util-01,
real Terraform with the real provider); see tests/integration/site/conftest.py. Each test is one
*probe*: a fault at one moment of one step, then the invariants (``Invariants``) and, where the
probe says so, a resume that must converge to the end state of a clean run. The session ends
with a tally line ``fault probes: tried N, survived N, lost N``.

Runs that start the sshd use fixed loopback addresses: run this suite under
``flock /tmp/eminfra-hosts.lock``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tempfile
import time

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
from tests.ansible_run import BIN, ROOT, ansible_env, with_results_callback
from tests.integration._procs import proc_files
from tests.integration.site.conftest import SITE, Site, SshNode, serve_site_mirror, terraform_found
from tests.integration.site.conftest import site  # noqa: F401  pylint: disable=unused-import
from tests.pvesim.fixtures import pvesim  # noqa: F401  pylint: disable=unused-import

HERE = os.path.dirname(os.path.abspath(__file__))
INTENT_NODES_BASE = os.path.join(HERE, 'intent', 'nodes-base.yaml')
INTENT_VMIDS = {7701, 7702, 7704}
_TALLY = {'tried': 0, 'survived': 0, 'lost': 0}


def pytest_runtest_logreport(report) -> None:
    if report.when == 'call' and 'probe' in report.keywords:
        _TALLY['tried'] += 1
        _TALLY['survived' if report.passed else 'lost'] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if _TALLY['tried']:
        terminalreporter.write_line(f'fault probes: tried {_TALLY["tried"]}, survived {_TALLY["survived"]}, '
                                    f'lost {_TALLY["lost"]}')


# ------------------------------------------------------------------ processes
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for pid, data in proc_files('stat'):
        text = data.decode('utf-8', errors='replace')
        fields = text[text.rindex(')') + 2:].split()
        tree.setdefault(int(fields[1]), []).append(pid)
    return tree


def descendants(pid: int) -> list[int]:
    tree = _children()
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        for child in tree.get(current, []):
            out.append(child)
            todo.append(child)
    return out


def processes_with_env(key: str, value: str) -> list[int]:
    """Processes whose environment holds ``key=value`` (the run's own processes)."""
    needle = f'{key}={value}'.encode()
    return [pid for pid, data in proc_files('environ') if needle in data.split(b'\0')]


class Run:
    """One ansible-playbook site.yml in its own session, to be killed or interrupted at a moment."""

    def __init__(self, site: Site, *args: str, **extra) -> None:
        env = ansible_env(site.state)
        self.results = tempfile.NamedTemporaryFile(prefix='eminfra-results-', suffix='.jsonl', delete=False)
        env['EMINFRA_TEST_RESULTS'] = self.results.name
        with_results_callback(env)
        self.log = tempfile.NamedTemporaryFile(prefix='eminfra-fault-run-', suffix='.log', delete=False)
        argv = [os.path.join(BIN, 'ansible-playbook'), SITE, *site.variables(**extra), *args]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def output(self) -> str:
        with open(self.log.name, encoding='utf-8', errors='replace') as handle:
            return handle.read()

    def wait_for(self, condition, timeout: float = 300.0, what: str = 'the moment') -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f'the run ended (rc {self.proc.returncode}) before {what}:\n{self.output}')
            time.sleep(0.1)
        raise AssertionError(f'timed out waiting for {what}:\n{self.output}')

    def kill_tree(self) -> None:
        """kill -9 of the whole process tree: the controller, its workers, modules and Terraform."""
        victims = [self.proc.pid] + descendants(self.proc.pid)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def kill_controller(self) -> None:
        """kill -9 of the ansible-playbook process only: its background jobs live on."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def interrupt(self, signum: int, group: bool) -> int:
        """Ctrl-C (SIGINT to the foreground process group) or SIGTERM (to the controller)."""
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            os.kill(self.proc.pid, signum)
        try:
            return self.proc.wait(180)
        except subprocess.TimeoutExpired:
            self.kill_tree()
            raise AssertionError(f'the run did not end within 180 s of signal {signum}:\n{self.output}') from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill_tree()
        for handle in (self.results, self.log):
            handle.close()
            os.unlink(handle.name)


# ------------------------------------------------------------------ invariants
class Invariants:
    """What must hold after any fault: records parseable and truthful, no torn state, no lost VM."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def latest(self) -> dict[str, str]:
        return read_env_file(self.site.path('runs', 'latest.env'))

    def closed(self, step: str) -> dict[str, str]:
        """The run ended in latest.env: failed at ``step`` with a check id, summary written, lock released."""
        latest = self.latest()
        assert latest['RUN_STATUS'] == 'failed', latest
        assert latest['LAST_STEP_FAILED'] == step, latest
        assert latest.get('LAST_FAILED_CHECK'), latest
        assert os.path.isfile(self.site.path('runs', latest['RUN_ID'], 'summary.txt')), latest['RUN_ID']
        assert not os.path.exists(self.site.path('runs', 'run.lock')), 'the run lock was left behind'
        return latest

    def tfstate(self) -> dict | None:
        path = self.site.path('cache', 'terraform', 'k3s-dev', 'terraform.tfstate')
        if not os.path.exists(path):
            return None
        with open(path, 'rb') as handle:
            raw = handle.read()
        try:
            return json.loads(raw)
        except ValueError:
            # Terraform rewrites its local state in place, so kill -9 can tear it: then the last good
            # state must be kept beside it (the snapshot the wrapper takes before an apply), for the next run.
            snapshot = path + '.pre-apply'
            assert os.path.exists(snapshot), f'{path} is torn ({len(raw)} bytes) and no last good copy was kept'
            with open(snapshot, 'rb') as handle:
                good = handle.read()
            return json.loads(good) if good.strip() else None

    def state_vmids(self) -> dict[int, str]:
        state = self.tfstate() or {}
        out = {}
        for resource in state.get('resources', []):
            if resource.get('type') != 'proxmox_virtual_environment_vm' or resource.get('mode') != 'managed':
                continue
            for instance in resource.get('instances', []):
                out[int(instance['attributes']['vm_id'])] = instance.get('status') or 'ok'
        return out

    def sim_vmids(self) -> list[int]:
        return [vm['vmid'] for vm in self.site.sim.control('vms')]

    def manifest_digests_true(self) -> None:
        path = self.site.path('cache', 'templates', 'manifest.json')
        if not os.path.exists(path):
            return
        with open(path, encoding='utf-8') as handle:
            manifest = json.load(handle)
        for name in ('ubuntu', 'talos'):
            entry = manifest.get(name)
            if not isinstance(entry, dict) or not entry.get('sha256'):
                continue
            artefact = entry['path'] if os.path.isabs(entry['path']) else os.path.join(ROOT, entry['path'])
            with open(artefact, 'rb') as data:
                digest = hashlib.file_digest(data, 'sha256').hexdigest()
            assert digest == entry['sha256'], f'{name}: the artefact does not have its recorded digest'

    def always(self) -> None:
        """After any fault, before any resume."""
        self.latest()  # parseable
        self.tfstate()  # absent, or non-empty JSON
        sims = self.sim_vmids()
        assert len(sims) == len(set(sims))
        self.manifest_digests_true()

    def converged(self, reference: dict) -> None:
        """The end state of a clean run: the same VMs, each once, each in the state, nothing tainted."""
        latest = self.latest()
        assert latest['RUN_STATUS'] == 'succeeded' and latest['LAST_STEP_COMPLETED'] == 'ansible_docker', latest
        assert self.end_state() == reference
        assert not os.path.exists(self.site.path('runs', 'run.lock'))
        self.manifest_digests_true()

    def end_state(self) -> dict:
        with open(self.site.path('cache', 'terraform', 'outputs.json'), encoding='utf-8') as handle:
            outputs = json.load(handle)
        return {'vms': sorted(self.sim_vmids()), 'state': self.state_vmids(), 'outputs': outputs}


@pytest.fixture(scope='module')
def site_mirror():
    """The site suite's mirror (1 MiB artefacts); this suite's own, so its faults never reach another suite."""
    yield from serve_site_mirror()


@pytest.fixture(scope='module')
def ssh_node(tmp_path_factory):
    """The loopback sshd on util-01's address, stopped when the module ends: the site suite starts its own."""
    if not os.path.exists('/usr/sbin/sshd'):
        pytest.skip('no sshd (make setup installs openssh-server)')
    node = SshNode(str(tmp_path_factory.mktemp('sshnode')))
    yield node
    node.stop()


@pytest.fixture(scope='module')
def reference_end_state(pvesim, site_mirror, ssh_node, tmp_path_factory):  # noqa: F811
    """The end state of one clean run (VMs, Terraform state, outputs.json): what every resume must reach."""
    if not terraform_found():
        pytest.skip('no terraform or tofu (make setup installs the embedded Terraform)')
    pvesim.reset()
    site_mirror.reset()
    ssh_node.start()
    clean = Site(str(tmp_path_factory.mktemp('state-clean')), pvesim, site_mirror)
    clean.write_proxmox_env()
    result = clean.run()
    assert result.rc == 0, result.output
    return Invariants(clean).end_state()
