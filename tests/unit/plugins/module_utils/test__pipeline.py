# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Step planning, the run lock, the read-only checks and the summary of _pipeline."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _pipeline
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import STEPS, StateLayout


# ------------------------------------------------------------------ planning

def test_a_plain_run_runs_every_step_whatever_was_completed():
    plan = _pipeline.plan_steps({'LAST_STEP_COMPLETED': 'terraform_apply'})
    assert plan['mode'] == 'full' and plan['run'] == list(STEPS) and plan['revalidate'] == [] and plan['skip'] == []


@pytest.mark.parametrize('last, revalidate, run', [
    ('', [], list(STEPS)),
    ('proxmox_access', ['proxmox_access'], list(STEPS[1:])),
    ('terraform_apply', ['proxmox_access', 'templates', 'terraform_apply'], list(STEPS[3:])),
    ('ansible_inventory', ['proxmox_access', 'templates', 'terraform_apply', 'ansible_inventory'],
     ['ansible_base', 'ansible_docker']),
    # The node steps are re-run, not re-validated: a resume after them runs them again.
    ('ansible_base', ['proxmox_access', 'templates', 'terraform_apply', 'ansible_inventory'],
     ['ansible_base', 'ansible_docker']),
    ('ansible_docker', ['proxmox_access', 'templates', 'terraform_apply', 'ansible_inventory'],
     ['ansible_base', 'ansible_docker']),
])
def test_resume_revalidates_the_completed_steps_and_starts_after_them(last, revalidate, run):
    plan = _pipeline.plan_steps({'LAST_STEP_COMPLETED': last}, resume=True)
    assert plan['mode'] == 'resume'
    assert plan['revalidate'] == revalidate and plan['run'] == run
    assert plan['skip'] + plan['run'] == list(STEPS)


def test_a_dry_run_is_never_a_reason_to_skip():
    latest = {'LAST_STEP_COMPLETED': '', 'DRY_RUN_LAST_STEP': 'ansible_docker', 'DRY_RUN': 'true'}
    assert _pipeline.plan_steps(latest, resume=True)['run'] == list(STEPS)
    assert _pipeline.plan_steps(latest, resume=True, dry_run=True)['dry_run'] is True


def test_start_at_replays_from_a_step_after_revalidating_the_ones_before():
    plan = _pipeline.plan_steps({'LAST_STEP_COMPLETED': 'ansible_docker'}, start_at='templates')
    assert plan['mode'] == 'start_at' and plan['revalidate'] == ['proxmox_access'] and plan['run'] == list(STEPS[1:])
    plan = _pipeline.plan_steps({'LAST_STEP_COMPLETED': 'templates'}, start_at='terraform_apply')
    assert plan['run'] == list(STEPS[2:])


def test_start_at_refuses_a_step_whose_predecessors_never_completed():
    with pytest.raises(CheckError) as err:
        _pipeline.plan_steps({'LAST_STEP_COMPLETED': 'proxmox_access'}, start_at='terraform_apply')
    assert err.value.check == 'run_controls' and 'eminfra_start_at=templates' in str(err.value)


@pytest.mark.parametrize('latest, kw, check', [
    ({}, {'resume': True, 'start_at': 'templates'}, 'run_controls'),
    ({}, {'start_at': 'nope'}, 'run_controls'),
    ({'LAST_STEP_COMPLETED': 'bogus'}, {'resume': True}, 'latest_env_valid'),
])
def test_bad_run_controls_are_refused(latest, kw, check):
    with pytest.raises(CheckError) as err:
        _pipeline.plan_steps(latest, **kw)
    assert err.value.check == check and err.value.remediation


# ------------------------------------------------------------------ the run lock

def test_the_lock_is_taken_refused_while_held_and_released(tmp_path):
    lock = _pipeline.RunLock(str(tmp_path / 'runs' / 'run.lock'))
    taken = lock.acquire('20260101T000000Z-aaaaaa', os.getpid())
    assert taken['taken_over'] is None
    assert lock.holder()['run_id'] == '20260101T000000Z-aaaaaa'
    assert lock.holder()['start_time'] == _pipeline.process_start_time(os.getpid())
    with pytest.raises(CheckError) as err:
        lock.acquire('20260101T000001Z-bbbbbb', os.getpid())
    assert err.value.check == 'run_lock' and 'RUN_ID 20260101T000000Z-aaaaaa' in str(err.value)
    assert not lock.release('20260101T000001Z-bbbbbb')  # not the holder: left alone
    assert lock.release('20260101T000000Z-aaaaaa')
    assert lock.holder() is None


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_a_lock_of_a_dead_process_is_taken_over(tmp_path):
    lock = _pipeline.RunLock(str(tmp_path / 'run.lock'))
    lock.acquire('20260101T000000Z-dead00', dead_pid())
    taken = lock.acquire('20260101T000001Z-live00', os.getpid())
    assert taken['taken_over']['run_id'] == '20260101T000000Z-dead00'
    assert lock.holder()['run_id'] == '20260101T000001Z-live00'
    assert [name for name in os.listdir(tmp_path) if name != 'run.lock'] == []


def test_a_reused_pid_does_not_keep_a_lock(tmp_path):
    """Same pid, other start time: the process that took the lock is gone."""
    path = tmp_path / 'run.lock'
    path.write_text(json.dumps({'run_id': 'old', 'pid': os.getpid(), 'start_time': '1', 'boot_id': _pipeline.boot_id(),
                                'host': os.uname().nodename}))
    lock = _pipeline.RunLock(str(path))
    assert lock.acquire('new', os.getpid())['taken_over']['run_id'] == 'old'


def test_a_lock_of_another_boot_is_stale(tmp_path):
    path = tmp_path / 'run.lock'
    path.write_text(json.dumps({'run_id': 'old', 'pid': os.getpid(),
                                'start_time': _pipeline.process_start_time(os.getpid()),
                                'boot_id': 'another-boot', 'host': os.uname().nodename}))
    assert _pipeline.RunLock(str(path)).acquire('new', os.getpid())['taken_over']['run_id'] == 'old'


@pytest.mark.parametrize('content', ['', '{"run_id": "half', 'not json at all\n', '[1, 2]'],
                         ids=['empty', 'torn', 'garbage', 'not_an_object'])
def test_an_empty_or_damaged_lock_is_taken_over_like_a_stale_one(tmp_path, content):
    """Locks appear with their content (written aside, then linked): an unreadable one holds nobody."""
    path = tmp_path / 'run.lock'
    path.write_text(content)
    taken = _pipeline.RunLock(str(path)).acquire('new', os.getpid())
    assert taken['taken_over'] == {}
    assert _pipeline.RunLock(str(path)).holder()['run_id'] == 'new'
    assert os.listdir(tmp_path) == ['run.lock']


def test_a_lock_appears_with_its_content(tmp_path, monkeypatch):
    """While the lock is being written it is not yet there: no reader ever sees an empty lock."""
    path = str(tmp_path / 'run.lock')
    seen = []
    real_link = os.link

    def link(src, dst):
        seen.append(os.path.exists(path))
        real_link(src, dst)
    monkeypatch.setattr(os, 'link', link)
    _pipeline.RunLock(path).acquire('new', os.getpid())
    assert seen == [False] and json.loads(open(path, encoding='utf-8').read())['run_id'] == 'new'


def test_run_processes_are_found_by_the_run_marker_and_stopped(tmp_path):
    """A background job of a dead run (its controller gone) is found by EMINFRA_RUN_ID and stopped."""
    env = dict(os.environ, EMINFRA_RUN_ID='20260101T000000Z-orphan')
    orphan = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], env=env)
    other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        found = _pipeline.run_processes('20260101T000000Z-orphan')
        assert list(found) == [orphan.pid] and 'time.sleep(60)' in found[orphan.pid]
        result = _pipeline.stop_run_processes('20260101T000000Z-orphan', wait=10)
        assert list(result['stopped']) == [orphan.pid] and result['alive'] == {}
        assert orphan.wait(5) == -15 and other.poll() is None
    finally:
        for proc in (orphan, other):
            proc.kill()
            proc.wait()


def test_run_processes_that_ignore_sigterm_are_named(tmp_path):
    env = dict(os.environ, EMINFRA_RUN_ID='20260101T000000Z-stubbn')
    code = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)'
    stubborn = subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE)
    try:
        stubborn.stdout.readline()
        result = _pipeline.stop_run_processes('20260101T000000Z-stubbn', wait=0.5)
        assert list(result['alive']) == [stubborn.pid]
        err = _pipeline.orphans_error('20260101T000000Z-stubbn', result['alive'], 'state/runs/run.lock')
        assert err.check == 'run_lock' and f'pid {stubborn.pid}' in str(err) and f'kill {stubborn.pid}' in str(err)
    finally:
        stubborn.kill()
        stubborn.wait()


def test_interrupted_step_is_the_last_logged_step(tmp_path):
    (tmp_path / 'tasks.log').write_text('{"step": ""}\n{"step": "templates"}\n{"step": "terraform_apply"}\nnot json\n')
    assert _pipeline.interrupted_step({'LAST_STEP_COMPLETED': 'templates'}, str(tmp_path)) == 'terraform_apply'
    assert _pipeline.interrupted_step({'LAST_STEP_COMPLETED': 'templates'}, str(tmp_path / 'none')) == 'terraform_apply'
    assert _pipeline.interrupted_step({}, str(tmp_path / 'none')) == 'proxmox_access'


def test_only_one_of_many_simultaneous_takers_wins(tmp_path):
    """Many runs find the same stale lock at once: exactly one takes it over (20 rounds, 12 takers)."""
    lock_path = str(tmp_path / 'run.lock')
    for dummy_round in range(20):
        if os.path.exists(lock_path):
            os.unlink(lock_path)
        _pipeline.RunLock(lock_path).acquire('dead', dead_pid())
        results = []
        start = threading.Barrier(12)

        def take(index):
            start.wait()
            try:
                _pipeline.RunLock(lock_path).acquire(f'run-{index}', os.getpid())
                results.append(('won', index))
            except CheckError:
                results.append(('lost', index))

        threads = [threading.Thread(target=take, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r[0] for r in results].count('won') == 1, results
        winner = [r[1] for r in results if r[0] == 'won'][0]
        assert _pipeline.RunLock(lock_path).holder()['run_id'] == f'run-{winner}'
        assert os.listdir(tmp_path) == ['run.lock']


def test_find_controller_walks_up_to_the_topmost_ansible_playbook(tmp_path):
    """A process tree like a run's: ansible-playbook -> its worker fork (same command line) -> sh -> python."""
    probe = tmp_path / 'probe.py'
    probe.write_text('import sys\n'
                     f'sys.path.insert(0, {os.path.abspath(".collections")!r})\n'
                     'from ansible_collections.eminfra.pipeline.plugins.module_utils import _pipeline\n'
                     'print("controller", _pipeline.find_controller())\n')
    script = tmp_path / 'ansible-playbook'
    script.write_text(f'#!{sys.executable}\n'
                      'import os, subprocess, sys\n'
                      'if len(sys.argv) == 1:\n'
                      '    print("top", os.getpid(), flush=True)\n'
                      '    sys.exit(subprocess.call([sys.argv[0], "worker"]))\n'
                      f'sys.exit(subprocess.call(["/bin/sh", "-c", "{sys.executable} {probe}; true"]))\n')
    script.chmod(0o755)
    out = subprocess.run([str(script)], capture_output=True, text=True, check=True, timeout=60).stdout
    words = dict(line.split() for line in out.splitlines())
    assert words['controller'] == words['top'], out
    assert _pipeline.find_controller() is None or _pipeline.find_controller() != os.getpid()


# ------------------------------------------------------------------ checks

def make_layout(tmp_path) -> StateLayout:
    root = tmp_path / 'project'
    (root / 'state').mkdir(parents=True)
    return StateLayout(str(root / 'state'), project_root=str(root))


def write_manifest(layout: StateLayout, tmp_path, data: bytes = b'artefact bytes') -> dict:
    os.makedirs(layout.templates_dir, exist_ok=True)
    manifest = {'schema_version': 1, 'generated_at': '2026-01-30T22:00:00+00:00'}
    for name, kind in (('ubuntu', 'raw'), ('talos', 'raw')):
        path = os.path.join(layout.templates_dir, f'{name}.raw')
        with open(path, 'wb') as handle:
            handle.write(data)
        manifest[name] = {'type': kind, 'source': f'http://127.0.0.1:1/{name}.raw', 'filename': f'{name}.raw',
                          'path': path, 'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data),
                          'fetched_at': '2026-01-30T22:00:00+00:00', 'checksum_source': 'published'}
    with open(layout.manifest, 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    return manifest


def test_templates_check_passes_and_names_each_failure(tmp_path):
    layout = make_layout(tmp_path)
    with pytest.raises(CheckError) as err:
        _pipeline.check_templates(layout)
    assert err.value.check == 'templates_present' and 'does not exist' in str(err.value)
    manifest = write_manifest(layout, tmp_path)
    assert set(_pipeline.check_templates(layout)) == {'ubuntu', 'talos'}
    with open(manifest['talos']['path'], 'wb') as handle:
        handle.write(b'artefact bytez')  # same size, other content
    with pytest.raises(CheckError) as err:
        _pipeline.check_templates(layout)
    assert 'talos.sha256' in str(err.value) and str(err.value).endswith('-e eminfra_start_at=templates')
    os.unlink(manifest['talos']['path'])
    with pytest.raises(CheckError) as err:
        _pipeline.check_templates(layout)
    assert 'artefact talos is missing' in str(err.value)


@pytest.mark.parametrize('how', ['absolute', 'dotdot', 'symlink'])
def test_templates_check_refuses_an_artefact_outside_the_state_root(tmp_path, how):
    """An identical copy of the artefact outside the state root does not satisfy the manifest."""
    layout = make_layout(tmp_path)
    manifest = write_manifest(layout, tmp_path)
    outside = tmp_path / 'elsewhere' / 'ubuntu.raw'
    outside.parent.mkdir()
    shutil.copy(manifest['ubuntu']['path'], outside)
    if how == 'absolute':
        manifest['ubuntu']['path'] = str(outside)
    elif how == 'dotdot':
        manifest['ubuntu']['path'] = 'state/../../elsewhere/ubuntu.raw'
    else:
        link = os.path.join(layout.templates_dir, 'ubuntu-link.raw')
        os.symlink(outside, link)
        manifest['ubuntu']['path'] = link
    with open(layout.manifest, 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    with pytest.raises(CheckError) as err:
        _pipeline.check_templates(layout)
    message = str(err.value)
    assert err.value.check == 'templates_present'
    assert message.startswith(f'templates_present: {layout.manifest}: ubuntu.path: ')
    assert f'is outside the state root {layout.root}' in message
    assert message.endswith('-e eminfra_start_at=templates')


def write_outputs(layout: StateLayout, nodes: list[dict]) -> None:
    os.makedirs(os.path.join(layout.terraform_workdir, 'k3s-dev'), exist_ok=True)
    raw_nodes = [dict(n) for n in nodes]
    with open(layout.terraform_state, 'w', encoding='utf-8') as handle:
        json.dump({'version': 4, 'outputs': {'nodes': {'value': raw_nodes, 'type': 'list'},
                                             'talos_nodes': {'value': [], 'type': 'list'}}}, handle)
    with open(layout.outputs_json, 'w', encoding='utf-8') as handle:
        json.dump({'schema_version': 1, 'nodes': nodes, 'talos_nodes': []}, handle)


NODE = {'name': 'util-01', 'ipv4': '10.77.0.40', 'ssh_user': 'ubuntu', 'ssh_port': 22, 'groups': ['base']}


def test_terraform_outputs_check_compares_with_the_state(tmp_path):
    layout = make_layout(tmp_path)
    with pytest.raises(CheckError) as err:
        _pipeline.check_terraform_outputs(layout)
    assert err.value.check == 'terraform_outputs_valid'
    write_outputs(layout, [NODE])
    assert _pipeline.check_terraform_outputs(layout)['nodes'] == ['util-01']
    with open(layout.outputs_json, 'w', encoding='utf-8') as handle:
        json.dump({'schema_version': 1, 'nodes': [dict(NODE, ipv4='10.77.0.41')], 'talos_nodes': []}, handle)
    with pytest.raises(CheckError) as err:
        _pipeline.check_terraform_outputs(layout)
    assert 'differs from the Terraform state in nodes' in str(err.value)
    with open(layout.outputs_json, 'w', encoding='utf-8') as handle:
        handle.write('{"nodes": 1}')
    with pytest.raises(CheckError) as err:
        _pipeline.check_terraform_outputs(layout)
    assert err.value.check == 'terraform_outputs_valid'


def test_proxmox_env_checks(tmp_path):
    layout = make_layout(tmp_path)
    with pytest.raises(CheckError) as err:
        _pipeline.check_proxmox_env_present(layout)
    assert err.value.check == 'proxmox_env_present' and 'make demo' in err.value.remediation
    with open(layout.proxmox_env, 'w', encoding='utf-8') as handle:
        handle.write("PROXMOX_API_URL='https://127.0.0.1:8006'\n")
    os.chmod(layout.proxmox_env, 0o644)
    with pytest.raises(CheckError) as err:
        _pipeline.check_proxmox_env_mode(layout)
    assert err.value.check == 'proxmox_env_valid' and err.value.remediation == f'chmod 600 {layout.proxmox_env}'
    os.chmod(layout.proxmox_env, 0o600)
    _pipeline.check_proxmox_env_mode(layout)


# ------------------------------------------------------------------ summary

def test_summary_lists_every_step_with_status_duration_and_artefacts(tmp_path):
    plan = _pipeline.plan_steps({'LAST_STEP_COMPLETED': 'templates'}, resume=True)
    steps = _pipeline.normalise_steps(plan, [
        {'step': 'proxmox_access', 'status': 'revalidated', 'duration': 0.4},
        {'step': 'terraform_apply', 'status': 'failed', 'duration': 75.25, 'failed_check': 'templates_present'},
    ])
    assert [s['status'] for s in steps] == ['revalidated', 'revalidated', 'failed', 'not run', 'not run', 'not run']
    text = _pipeline.render_summary('RID', 'failed', False, steps, {'LAST_STEP_COMPLETED': 'templates',
                                                                    'LAST_STEP_FAILED': 'terraform_apply',
                                                                    'LAST_FAILED_CHECK': 'templates_present'})
    lines = text.splitlines()
    assert lines[0] == ('run RID: failed; LAST_STEP_COMPLETED=templates, LAST_STEP_FAILED=terraform_apply '
                        '(templates_present)')
    assert lines[2].split() == ['proxmox_access', 'revalidated', '0.4s']
    assert lines[4].split() == ['terraform_apply', 'failed', '1m15.2s', 'templates_present']
    files = _pipeline.write_summary(str(tmp_path / 'RID'), {'steps': steps}, text)
    assert [os.path.basename(f) for f in files] == ['steps.json', 'summary.txt']


class NodeVMs:
    """The one API call terraform_vms_present makes, answered like Proxmox would."""

    def __init__(self, vmids):
        self.vmids = vmids
        self.calls = []

    def get(self, endpoint):
        self.calls.append(endpoint)
        return [{'vmid': vmid, 'status': 'running'} for vmid in self.vmids]


def write_vm_state(layout: StateLayout, vms: dict, tainted=()) -> None:
    os.makedirs(os.path.dirname(layout.terraform_state), exist_ok=True)
    with open(layout.terraform_state, 'w', encoding='utf-8') as handle:
        json.dump({'version': 4, 'resources': [{'mode': 'managed', 'type': 'proxmox_virtual_environment_vm', 'name': 'vm',
                                                'instances': [{'index_key': name, 'status': 'tainted' if name in tainted else None,
                                                               'attributes': {'vm_id': vmid}} for name, vmid in vms.items()]}]},
                  handle)
    with open(layout.proxmox_env, 'w', encoding='utf-8') as handle:
        handle.write('PROXMOX_API_URL=https://127.0.0.1:8006/api2/json\nPROXMOX_NODE=pve\n'
                     'PROXMOX_TOKEN_ID=pipeline@pve!full\nPROXMOX_TOKEN_SECRET=unit-secret\n')
    os.chmod(layout.proxmox_env, 0o600)


def test_terraform_vms_present_asks_the_node(tmp_path):
    layout = make_layout(tmp_path)
    write_vm_state(layout, {'cp-01': 7701, 'worker-01': 7702})
    client = NodeVMs([7701, 7702, 9999])
    found = _pipeline.check_terraform_vms(layout, client=client)
    assert found['vms'] == ['cp-01', 'worker-01'] and client.calls == ['nodes/pve/qemu']
    with pytest.raises(CheckError) as err:
        _pipeline.check_terraform_vms(layout, client=NodeVMs([7701]))
    assert err.value.check == 'terraform_vms_present' and 'worker-01 (vmid 7702)' in str(err.value)
    assert 'eminfra_start_at=terraform_apply' in str(err.value)


def test_terraform_vms_present_refuses_a_tainted_vm(tmp_path):
    layout = make_layout(tmp_path)
    write_vm_state(layout, {'cp-01': 7701}, tainted=('cp-01',))
    with pytest.raises(CheckError) as err:
        _pipeline.check_terraform_vms(layout, client=NodeVMs([7701]))
    assert err.value.check == 'terraform_vms_present' and 'cp-01 is tainted' in str(err.value)
