# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault probes against the real pipeline: kill -9, Ctrl-C, SIGTERM, pvesim faults, stale records.

Every probe asserts the invariants after the fault (latest.env parseable and truthful, Terraform
state never torn, no duplicate VM, no artefact with a wrong digest) and, where it resumes, that
the resume converges to the end state of a clean run (``reference_end_state``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from tests.integration.faults.conftest import INTENT_NODES_BASE, Invariants, Run, processes_with_env
from tests.pvesim.mirror_fixtures import UBUNTU_PATH

pytestmark = [pytest.mark.slow, pytest.mark.probe]

TASK_STATUS = r'/nodes/[^/]+/tasks/[^/]+/status'
VM_CONFIG = r'/nodes/[^/]+/qemu/\d+/config'


def _slow_vm_reads(site) -> None:
    """Stretch the apply: the provider's first reads of each new VM's config take 3 s."""
    site.sim.control('fault', kind='latency', method='GET', path=VM_CONFIG, seconds=3, count=6)


def _templates_done(site) -> bool:
    try:
        return Invariants(site).latest().get('LAST_STEP_COMPLETED') == 'templates'
    except (OSError, ValueError, KeyError):
        return False


def _resume(site, reference, *args):
    result = site.run(*(args or ('-e', 'eminfra_resume=true')))
    assert result.rc == 0, result.output
    Invariants(site).converged(reference)
    return result


# ------------------------------------------------------------------ terraform_apply
def test_kill9_tree_during_apply_then_resume_converges(site, ssh_node, reference_end_state):
    """Defect 1: kill -9 of the whole run while VMs are being created; the lock file left empty too."""
    ssh_node.start()
    check = Invariants(site)
    _slow_vm_reads(site)
    run = Run(site)
    try:
        run.wait_for(lambda: len(check.sim_vmids()) >= 1, what='the first VM')
        run.kill_tree()
    finally:
        run.close()
    site.sim.control('clear_faults')
    check.always()
    latest = check.latest()
    assert latest['LAST_STEP_COMPLETED'] == 'templates'
    created = set(check.sim_vmids())
    before_resume_state = set(check.state_vmids())
    # a crash while the lock was being written: an empty lock is a stale one, not a block
    with open(site.path('runs', 'run.lock'), 'w', encoding='utf-8'):
        pass
    result = _resume(site, reference_end_state)
    tf = result.result('Plan and apply the Terraform environment (templates re-validated first)')
    print(f'\nkill -9 during the apply: state restored {tf["state_restored"]}, recovered {tf["recovered"]}, '
          f'counts {tf["counts"]}')
    # every VM the killed apply created is adopted, none created twice, none deleted
    assert {entry['vmid'] for entry in tf['recovered']['adopted']} == created - before_resume_state
    assert tf['counts']['destroy'] == 0
    # the interrupted run is closed truthfully in its own record
    with open(site.path('runs', latest['RUN_ID'], 'latest.env'), encoding='utf-8') as handle:
        assert "RUN_STATUS='failed'" in handle.read()
    assert 'run_interrupted' in result.output


def test_task_status_500_during_apply_names_a_check_and_resume_converges(site, ssh_node, reference_end_state):
    """Defect 1: one transient 500 on a task-status read while Terraform creates the VMs."""
    ssh_node.start()
    check = Invariants(site)
    run = Run(site)
    try:
        run.wait_for(lambda: _templates_done(site), what='the templates step to complete')
        site.sim.control('fault', kind='error', method='GET', path=TASK_STATUS, status=500, count=1)
        rc = run.proc.wait(600)
        output = run.output
    finally:
        run.close()
    site.sim.control('clear_faults')
    check.always()
    lost = set(check.sim_vmids()) - set(check.state_vmids())
    print(f'\n500 on a task-status read: rc {rc}, state {check.state_vmids()}, VMs {check.sim_vmids()}')
    if rc != 0:
        check.closed('terraform_apply')
        assert re.search(r'terraform_apply failed: \w+: .*Remediation: ', output, re.S), output[-3000:]
    result = _resume(site, reference_end_state)
    tf = result.result('Plan and apply the Terraform environment (templates re-validated first)')
    print(f'resume: recovered {tf["recovered"]}, counts {tf["counts"]}')
    # a VM the provider made and lost is adopted, not created twice; nothing is destroyed
    assert {entry['vmid'] for entry in tf['recovered']['adopted']} == lost
    assert tf['counts']['destroy'] == 0


@pytest.mark.parametrize('signum,group', [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=['ctrl_c', 'sigterm'])
def test_interrupt_during_apply_closes_the_run(site, ssh_node, reference_end_state, signum, group):
    """Defect 3: Ctrl-C (SIGINT to the process group) and SIGTERM (to ansible-playbook) during the apply."""
    ssh_node.start()
    check = Invariants(site)
    _slow_vm_reads(site)
    run = Run(site)
    try:
        run.wait_for(lambda: len(check.sim_vmids()) >= 1, what='the first VM')
        run.interrupt(signum, group)
    finally:
        run.close()
    site.sim.control('clear_faults')
    check.always()
    check.closed('terraform_apply')
    _resume(site, reference_end_state)


# ------------------------------------------------------------------ every other step
def _running_after(site, previous: str) -> bool:
    """The run is under way and ``previous`` is its last completed step ('' : none yet)."""
    try:
        latest = Invariants(site).latest()
    except (OSError, ValueError, KeyError):
        return False
    return latest.get('RUN_STATUS') == 'running' and latest.get('LAST_STEP_COMPLETED', '') == previous


@pytest.mark.parametrize('step,previous', [('proxmox_access', ''), ('ansible_inventory', 'terraform_apply'),
                                           ('ansible_base', 'ansible_inventory'), ('ansible_docker', 'ansible_base')],
                         ids=['proxmox_access', 'ansible_inventory', 'ansible_base', 'ansible_docker'])
def test_kill9_tree_during_a_step_then_resume_converges(site, ssh_node, reference_end_state, step, previous):
    """kill -9 of the whole process tree while ``step`` runs (the templates and terraform_apply steps have
    their own probes above): the records stay parseable, the next run closes the killed one as
    run_interrupted at that step, and a resume converges to the clean run's end state."""
    ssh_node.start()
    check = Invariants(site)
    run = Run(site)
    try:
        run.wait_for(lambda: _running_after(site, previous), what=f'the {step} step')
        run_id = check.latest()['RUN_ID']
        run.kill_tree()
    finally:
        run.close()
    check.always()
    assert check.latest()['RUN_STATUS'] == 'running', 'kill -9 leaves the record as it was; the next run closes it'
    result = _resume(site, reference_end_state)
    previous_run = result.result("Plan the run, take the run lock and record the run's start")['previous_run']
    assert previous_run['run_id'] == run_id and previous_run['closed'], previous_run
    with open(site.path('runs', run_id, 'latest.env'), encoding='utf-8') as handle:
        killed = handle.read()
    assert "RUN_STATUS='failed'" in killed and 'run_interrupted' in killed, killed
    assert not processes_with_env('EMINFRA_RUN_ID', run_id)


# ------------------------------------------------------------------ templates
def test_kill9_controller_during_download_leaves_one_writer(site, ssh_node, reference_end_state):
    """Defect 2: the controller dies, its background download lives on; the next run must not race it."""
    ssh_node.start()
    check = Invariants(site)
    site.mirror.fault(UBUNTU_PATH, throttle=128 * 1024)
    part = site.path('cache', 'templates')
    run = Run(site)
    try:
        run.wait_for(lambda: os.path.isdir(part) and any(n.endswith('.part') for n in os.listdir(part)),
                     what='a .part file')
        run_id = check.latest()['RUN_ID']
        run.kill_controller()
        assert processes_with_env('EMINFRA_RUN_ID', run_id), 'the background download did not outlive the controller'
        site.mirror.clear()
        result = site.run()
    finally:
        run.close()
    assert result.rc == 0, result.output
    previous = result.result("Plan the run, take the run lock and record the run's start")['previous_run']
    assert previous['run_id'] == run_id and previous['stopped'] and previous['closed'], previous
    assert not processes_with_env('EMINFRA_RUN_ID', run_id)
    check.always()
    check.converged(reference_end_state)


def test_stale_records_are_not_believed(site, ssh_node, reference_end_state):
    """Defect 4: a VM deleted behind Terraform's back, then a wrong sha256 in the manifest. A resume must
    not call terraform_apply revalidated; the suggested replay (start_at=templates) must fix the digest."""
    ssh_node.start()
    assert site.run().rc == 0
    check = Invariants(site)
    client = site.sim.client()
    node = site.sim.env()['PROXMOX_NODE']
    client.nodes(node).qemu(7702).status.stop.post()
    time.sleep(1)
    client.nodes(node).qemu(7702).delete()
    resumed = site.run('-e', 'eminfra_start_at=ansible_inventory')
    assert resumed.rc != 0, resumed.output
    latest = check.closed('terraform_apply')
    assert latest['LAST_FAILED_CHECK'] == 'terraform_vms_present'
    assert 'worker-01 (vmid 7702)' in resumed.output

    manifest_path = site.path('cache', 'templates', 'manifest.json')
    with open(manifest_path, encoding='utf-8') as handle:
        manifest = json.load(handle)
    manifest['ubuntu']['sha256'] = '0' * 64
    with open(manifest_path, 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    resumed = site.run('-e', 'eminfra_resume=true')
    assert resumed.rc != 0 and 'templates_present' in resumed.output
    assert 'eminfra_start_at=templates' in resumed.output  # the remediation it names
    _resume(site, reference_end_state, '-e', 'eminfra_start_at=templates')


# ------------------------------------------------------------------ ansible_base
def test_unreachable_node_closes_the_run(site, ssh_node):
    """Defect 3: a node that answers SSH but refuses every login is UNREACHABLE in ansible_base."""
    ssh_node.start()
    result = site.run(terraform_apply_intent_nodes_file=INTENT_NODES_BASE, proxmox_access_nodes_file=INTENT_NODES_BASE)
    assert result.rc != 0
    check = Invariants(site)
    check.always()
    latest = check.closed('ansible_base')
    assert latest['LAST_STEP_COMPLETED'] == 'ansible_inventory'
