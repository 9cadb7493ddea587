#!/usr/bin/python
# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pipeline_run
short_description: Start and finish a pipeline run, plan its steps, hold the run lock, run read-only checks
version_added: 0.1.0
description:
  - O(action=start) refuses at once without C(proxmox.env) (check C(proxmox_env_present)), plans the steps from
    the run controls and C(runs/latest.env), takes the run lock C(runs/run.lock) and starts the run in latest.env
    (through the same code as M(eminfra.pipeline.latest_env)).
  - The lock names the run's C(RUN_ID) and the ansible-playbook controller process (its pid and start time).
    A second run fails at once with the C(run_lock) check naming the holder's C(RUN_ID). A lock whose process is
    gone (or was replaced by another process with the same pid), or that is empty or damaged, is taken over with
    a warning. The lock appears with its content (written aside, then linked into place).
  - The lock covers all of a run's processes, not only ansible-playbook - every process started for the run's local
    tasks carries E(EMINFRA_RUN_ID) (set by C(playbooks/site.yml)), and so do their background jobs and Terraform.
    Before a run goes on, what is left of the previous run is stopped (SIGTERM, so Terraform saves its state),
    waiting up to 30 seconds; processes that are still running then make the run fail with the C(run_lock) check
    naming their pids. A previous run whose record still says C(RUN_STATUS=running) (it was killed) is closed in
    its own copy C(runs/<RUN_ID>/latest.env) as failed with the check C(run_interrupted), with its summary.
  - O(action=finish) closes the run in latest.env (C(RUN_STATUS)), writes C(runs/<RUN_ID>/steps.json) and
    C(runs/<RUN_ID>/summary.txt), and releases the lock.
  - O(action=check) runs read-only checks (C(proxmox_env_valid) without network, C(templates_present),
    C(terraform_backend), C(terraform_outputs_valid), and C(terraform_vms_present), which asks the Proxmox node
    whether every VM of the Terraform state is there and finds none tainted) and reports each with its status,
    detail and remediation.
  - C(terraform_backend) says which backend holds the Terraform state (the one C(terraform init) last recorded in the
    workdir). For V(pg) it reads C(terraform_backend.env) and asks the database (through the system's libpq) whether
    it answers; it fails with C(terraform_backend_unreachable) or C(terraform_backend_auth) when it does not. With
    V(pg), C(terraform_outputs_valid) compares C(outputs.json) with the state stored in PostgreSQL.
requirements:
  - jsonschema (Python library, on the host that runs the module)
author:
  - EM-Infra maintainers (@eminfra)
extends_documentation_fragment:
  - eminfra.pipeline.attributes
  - eminfra.pipeline.state
options:
  action:
    description:
      - V(start) plans the run, takes the lock and starts the run; V(finish) closes it; V(check) runs read-only checks;
        V(step) records a step; V(diagnose) builds the diagnostics table; V(paths) returns the state layout's paths.
    type: str
    required: true
    choices: [start, finish, check, step, diagnose, paths]
  step:
    description:
      - With O(action=step), the step to record.
    type: str
    choices: [proxmox_access, templates, terraform_apply, ansible_inventory, ansible_base, ansible_docker]
  event:
    description:
      - With O(action=step), what to record - the step's start, its end or its failure.
    type: str
    choices: [start, done, failed]
    default: done
  revalidation:
    description:
      - With O(action=step), the step was re-validated (a resume skips it), not run; its end leaves latest.env as it is.
    type: bool
    default: false
  started:
    description:
      - With O(action=step), when the step started (the fact C(eminfra_step_started) of O(event=start)).
    type: float
  result:
    description:
      - With O(action=step), the result the step's role left (for O(event=failed), the failed task's result).
    type: dict
    default: {}
  hosts:
    description:
      - With O(action=step), the nodes of C(ansible_inventory), C(ansible_base) or C(ansible_docker).
      - With O(action=diagnose), the inventory's hosts.
    type: list
    elements: str
    default: []
  failures:
    description:
      - With O(action=step) and O(event=failed), the failed result of each node that failed, by node name.
    type: dict
    default: {}
  token:
    description:
      - With O(action=diagnose), the result of M(eminfra.pipeline.proxmox_token_check) (skipped or empty when
        C(proxmox.env) is missing or invalid).
    type: dict
    default: {}
  ssh:
    description:
      - With O(action=diagnose), the results of the loop that waited for each node's SSH port.
    type: list
    elements: raw
    default: []
  resume:
    description:
      - With O(action=start), continue after C(LAST_STEP_COMPLETED) of latest.env; the completed steps are
        returned in RV(plan.revalidate) for the playbook to re-validate.
    type: bool
    default: false
  start_at:
    description:
      - With O(action=start), replay from this step. The steps before it must have completed.
    type: str
    choices: [proxmox_access, templates, terraform_apply, ansible_inventory, ansible_base, ansible_docker]
  dry_run:
    description:
      - With O(action=start), start a dry run (C(DRY_RUN=true)); it never advances C(LAST_STEP_COMPLETED).
    type: bool
    default: false
  status:
    description:
      - With O(action=finish), how the run ended.
    type: str
    choices: [succeeded, failed]
    default: succeeded
  plan:
    description:
      - With O(action=finish), the plan O(action=start) returned.
    type: dict
    default: {}
  steps:
    description:
      - With O(action=finish), what each step did, one dictionary per step with the keys C(step), C(status),
        C(duration) (seconds), C(artefacts) (paths) and C(failed_check).
      - With O(action=step), the run's step records so far (the fact C(eminfra_step_records)).
    type: list
    elements: dict
    default: []
  checks:
    description:
      - With O(action=check), the checks to run.
    type: list
    elements: str
    choices: [proxmox_env_present, proxmox_env_valid, templates_present, terraform_backend, terraform_outputs_valid,
              terraform_vms_present, run_lock]
    default: [proxmox_env_present, proxmox_env_valid, templates_present, terraform_backend, terraform_outputs_valid, run_lock]
  fail_on_error:
    description:
      - With O(action=check), fail the task at the first failed check (with its message), instead of only reporting.
    type: bool
    default: true
notes:
  - The lock's holder is found by walking this module's process ancestors in C(/proc) for the ansible-playbook
    command line, so the lock stays with the run, not with one task's process.
seealso:
  - module: eminfra.pipeline.latest_env
attributes:
  check_mode:
    support: full
    details:
      - O(action=start) and O(action=finish) compute the plan and the summary and write nothing, take no lock.
      - O(action=check), O(action=diagnose) and O(action=paths) never write anything.
      - O(action=step) computes the record in check mode and leaves latest.env as it is; C(playbooks/site.yml) runs it
        with C(check_mode=false), so that a dry run (C(DRY_RUN=true)) is recorded.
  diff_mode:
    support: none
    details: The run record's changes are shown by M(eminfra.pipeline.latest_env); this module reports none.
  idempotent:
    support: partial
    details:
      - O(action=start) always starts a new run with a new C(RUN_ID), so it always reports a change.
      - O(action=step) reports a change when it writes latest.env.
      - O(action=check), O(action=diagnose) and O(action=paths) never change anything.
'''

EXAMPLES = r'''
- name: Start the run
  eminfra.pipeline.pipeline_run:
    action: start
    resume: "{{ eminfra_resume | default(false) | bool }}"
    start_at: "{{ eminfra_start_at | default(omit, true) }}"
    dry_run: "{{ eminfra_dry_run | default(false) | bool }}"
  register: pipeline

- name: Re-validate the templates before a resume skips them
  eminfra.pipeline.pipeline_run:
    action: check
    checks: [templates_present]
  when: "'templates' in pipeline.plan.revalidate"

- name: Close the run
  eminfra.pipeline.pipeline_run:
    action: finish
    status: succeeded
    plan: "{{ pipeline.plan }}"
    steps: "{{ pipeline_steps }}"
'''

RETURN = r'''
swept:
  description:
    - Temporary files and directories of earlier, killed runs that O(action=start) removed (Ansible's
      C(ansible-local-*) and C(ansible-tmp-*) directories and Terraform's C(eminfra-terraform-*) directories
      whose processes are gone).
  returned: O(action=start), not in check mode
  type: list
  elements: str
run_id:
  description: The run's C(RUN_ID).
  returned: O(action=start) and O(action=finish)
  type: str
  sample: 20260130T090000Z-a1b2c3
run_dir:
  description: The run's directory under C(runs/).
  returned: O(action=start) and O(action=finish)
  type: str
  sample: /srv/eminfra/state/runs/20260130T090000Z-a1b2c3
plan:
  description: The steps to re-validate, run and skip.
  returned: O(action=start)
  type: dict
  contains:
    mode:
      description: V(full), V(resume) or V(start_at).
      type: str
      returned: always
    dry_run:
      description: Whether the run is a dry run.
      type: bool
      returned: always
    last_step_completed:
      description: C(LAST_STEP_COMPLETED) when the run started.
      type: str
      returned: always
    revalidate:
      description: Completed steps to re-validate before they are skipped.
      type: list
      elements: str
      returned: always
    run:
      description: Steps to run, in order.
      type: list
      elements: str
      returned: always
    skip:
      description: Steps not run.
      type: list
      elements: str
      returned: always
lock:
  description: The lock's content (RUN_ID, pid, start time, boot id, host, time taken).
  returned: O(action=start)
  type: dict
taken_over:
  description: The content of a lock left by a process that is gone, which this run took over; empty otherwise.
  returned: O(action=start)
  type: dict
previous_run:
  description:
    - The previous run as this run found it - its C(run_id), the processes of it that were still running and were
      stopped (C(stopped), pid to command line), and whether its record, left C(running) by a run that was killed, was
      closed as failed with the check C(run_interrupted) (C(closed), C(step)).
  returned: O(action=start)
  type: dict
summary:
  description: The run's summary table, as written to C(summary.txt).
  returned: O(action=finish)
  type: str
files:
  description: The files O(action=finish) wrote (C(steps.json), C(summary.txt)).
  returned: O(action=finish)
  type: list
  elements: str
summary_file:
  description: The path of the C(summary.txt) O(action=finish) wrote; absent in check mode.
  returned: O(action=finish) and not in check mode
  type: str
checks:
  description:
    - One entry per check with C(check), C(status) (V(ok), V(warning) or V(failed)), C(detail), C(where) and C(remediation).
    - C(terraform_outputs_valid) also has C(nodes), the names of the SSH-managed nodes in C(outputs.json).
    - C(terraform_backend) also has C(backend), V(local) or V(pg).
  returned: O(action=check)
  type: list
  elements: dict
steps:
  description: The pipeline's steps in order, each with C(name), C(role), C(result) (the variable its role leaves
    its result in), C(hosts) (the group of its nodes, empty for a local step), C(revalidated) and
    C(dry_run_requires) (the checks a dry run needs before the step's role runs).
  returned: O(action=start)
  type: list
  elements: dict
step:
  description: The entries of RV(steps) by step name.
  returned: O(action=start)
  type: dict
paths:
  description: The state layout's paths (C(state_dir), C(proxmox_env), C(manifest), C(outputs_json), C(latest_env), ...).
  returned: O(action=start) and O(action=paths)
  type: dict
ansible_facts:
  description:
    - The run's step records (C(eminfra_step_records), none yet for O(action=start)) and, for O(event=start),
      C(eminfra_step_started).
  returned: O(action=start) and O(action=step)
  type: dict
record:
  description: The step's record - C(step), C(status), C(duration), C(artefacts) and, when it failed, C(failed_check).
  returned: O(action=step) and O(event) is not V(start)
  type: dict
recorded:
  description: Whether latest.env was written (a failure already recorded there is not recorded again).
  returned: O(action=step)
  type: bool
msg:
  description: With O(event=failed), the message the run stops with.
  returned: O(action=step) and O(event=failed)
  type: str
rows:
  description: The diagnostics table's rows, each with C(check), C(status), C(detail) and C(remediation).
  returned: O(action=diagnose)
  type: list
  elements: dict
table:
  description: The rows rendered as a table, one line per row (and one per remediation of a row that is not ok).
  returned: O(action=diagnose)
  type: str
check_steps:
  description: The step each file check belongs to (pending until that step has completed).
  returned: O(action=diagnose)
  type: dict
failed_checks:
  description: The checks that failed, in the table's order.
  returned: O(action=diagnose)
  type: list
  elements: str
failed_check:
  description: The id of the check that failed.
  returned: failure, and O(action=step) with O(event=failed)
  type: str
  sample: run_lock
remediation:
  description: What the operator can do about the failure.
  returned: failure, and O(action=step) with O(event=failed)
  type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.eminfra.pipeline.plugins.module_utils import _pipeline, _run_steps, _tempfiles
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import HAS_JSONSCHEMA, JSONSCHEMA_IMPORT_ERROR
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._latest_env import LatestEnv
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import STEPS, StateLayout, state_dir_argument_spec

CHECKS = ('proxmox_env_present', 'proxmox_env_valid', 'templates_present', 'terraform_backend', 'terraform_outputs_valid',
          'terraform_vms_present', 'run_lock')


def start(module: AnsibleModule, layout: StateLayout) -> dict:
    params = module.params
    _pipeline.check_proxmox_env_present(layout)
    record = LatestEnv(layout)
    before_text, current = record.read()
    plan = _pipeline.plan_steps(current, resume=params['resume'], start_at=params['start_at'], dry_run=params['dry_run'])
    content = record.plan(current, start_run=True, dry_run=params['dry_run'])
    run_id = content['RUN_ID']
    result = {'changed': True, 'plan': plan, 'run_id': run_id, 'run_dir': record.run_dir(run_id), 'lock': {},
              'taken_over': {}, 'steps': _run_steps.step_table(), 'paths': layout.as_dict()}
    result['step'] = {entry['name']: entry for entry in result['steps']}
    result['ansible_facts'] = {'eminfra_step_records': []}
    if module.check_mode:
        return result
    controller = _pipeline.find_controller()
    if controller is None:
        controller = os.getppid()
        module.warn(f'no ansible-playbook process among the ancestors of pid {os.getpid()}: the run lock names '
                    f'pid {controller}')
    lock = _pipeline.RunLock(layout.lock)
    taken = lock.acquire(run_id, controller)
    if taken['taken_over']:
        old = taken['taken_over']
        module.warn(f'run_lock: took over the lock of run {old.get("run_id", "unknown")} (pid {old.get("pid", "?")}), '
                    'whose process is gone')
    try:
        result['previous_run'] = end_previous_run(module, layout, record, current)
        record.write(content, before_text)
    except BaseException:
        lock.release(run_id)
        raise
    result.update(lock=taken['lock'], taken_over=taken['taken_over'] or {})
    # What killed runs left behind (their processes are gone): Ansible's and Terraform's temporary files.
    result['swept'] = (_tempfiles.sweep_ansible(_tempfiles.ansible_temp_dir())
                       + _tempfiles.sweep(_tempfiles.TERRAFORM_PREFIX))
    return result


def end_previous_run(module: AnsibleModule, layout: StateLayout, record: LatestEnv, current: dict) -> dict:
    """Before a new run goes on: what is left of the previous one is stopped, and a record it left
    ``running`` (it was killed) is closed in its own copy as failed with the check run_interrupted."""
    previous = current.get('RUN_ID', '')
    if not previous:
        return {}
    out = {'run_id': previous, 'stopped': {}, 'closed': False}
    stopped = _pipeline.stop_run_processes(previous)
    if stopped['alive']:
        raise _pipeline.orphans_error(previous, stopped['alive'], layout.lock)
    if stopped['stopped']:
        out['stopped'] = {str(pid): cmd for pid, cmd in stopped['stopped'].items()}
        module.warn(f'run_lock: stopped {len(stopped["stopped"])} processes left by run {previous}: '
                    + '; '.join(f'pid {pid}: {cmd}' for pid, cmd in sorted(stopped['stopped'].items())))
    if current.get('RUN_STATUS') == 'running':
        run_dir = record.run_dir(previous)
        step = _pipeline.interrupted_step(current, run_dir)
        closed = dict(current, RUN_STATUS='failed', LAST_STEP_FAILED=step, LAST_FAILED_CHECK='run_interrupted')
        copy = LatestEnv(layout, path=os.path.join(run_dir, 'latest.env'))
        copy_text, dummy = copy.read()
        copy.write(closed, copy_text)
        steps = _pipeline.normalise_steps({}, [{'step': step, 'status': 'failed', 'failed_check': 'run_interrupted'}])
        text = _pipeline.render_summary(previous, 'failed', current.get('DRY_RUN') == 'true', steps, closed)
        _pipeline.write_summary(run_dir, {'run_id': previous, 'status': 'failed', 'steps': steps,
                                          'last_step_completed': closed.get('LAST_STEP_COMPLETED', ''),
                                          'last_step_failed': step, 'last_failed_check': 'run_interrupted'}, text)
        out.update(closed=True, step=step)
        module.warn(f'run_interrupted: run {previous} ended without closing its record (killed?) during step {step}; '
                    f'recorded as failed in {run_dir}/latest.env. LAST_STEP_COMPLETED stays '
                    f'{current.get("LAST_STEP_COMPLETED") or "empty"}; a resume re-validates what that run left')
    return out


def finish(module: AnsibleModule, layout: StateLayout) -> dict:
    params = module.params
    record = LatestEnv(layout)
    dummy, current = record.read()
    run_id = current.get('RUN_ID', '')
    if not run_id:
        raise CheckError('latest_env_run', 'no run is recorded yet', where=record.path,
                         remediation='start the run with action: start')
    steps = _pipeline.normalise_steps(params['plan'], params['steps'])
    status = params['status']
    if status == 'succeeded' and current.get('RUN_STATUS') == 'failed':
        status = 'failed'
    result = {'changed': True, 'run_id': run_id, 'run_dir': record.run_dir(run_id), 'files': []}
    if not module.check_mode:
        current = record.run(run_status=status)['values']
    dry_run = current.get('DRY_RUN') == 'true'
    text = _pipeline.render_summary(run_id, status, dry_run, steps, current)
    summary = {'run_id': run_id, 'status': status, 'dry_run': dry_run, 'plan': params['plan'], 'steps': steps,
               'last_step_completed': current.get('LAST_STEP_COMPLETED', ''),
               'last_step_failed': current.get('LAST_STEP_FAILED', ''),
               'last_failed_check': current.get('LAST_FAILED_CHECK', '')}
    result['summary'] = text
    result['status'] = status
    if not module.check_mode:
        result['files'] = _pipeline.write_summary(record.run_dir(run_id), summary, text)
        result['summary_file'] = result['files'][1]
        if not _pipeline.RunLock(layout.lock).release(run_id):
            module.warn(f'run_lock: {layout.lock} was not held by run {run_id}; left as it is')
    return result


def run_checks(module: AnsibleModule, layout: StateLayout) -> dict:
    results = []
    for check in module.params['checks']:
        entry = {'check': check, 'status': 'ok', 'detail': '', 'where': '', 'remediation': ''}
        try:
            if check == 'proxmox_env_present':
                _pipeline.check_proxmox_env_present(layout)
                entry['detail'] = layout.proxmox_env
            elif check == 'proxmox_env_valid':
                _pipeline.check_proxmox_env_mode(layout)
                entry['detail'] = 'regular file, mode 0600 or stricter'
            elif check == 'templates_present':
                found = _pipeline.check_templates(layout)
                entry['artefacts'] = [f'{name}: {path}' for name, path in found.items()]
                entry['detail'] = ', '.join(entry['artefacts'])
            elif check == 'terraform_backend':
                found = _pipeline.check_terraform_backend(layout)
                entry['detail'] = found['detail']
                entry['backend'] = found['backend']
            elif check == 'terraform_outputs_valid':
                found = _pipeline.check_terraform_outputs(layout)
                entry['detail'] = f'{len(found["nodes"])} SSH-managed nodes; matches {found["state"]}'
                entry['artefacts'] = [entry['detail']]
                entry['nodes'] = found['nodes']
            elif check == 'terraform_vms_present':
                found = _pipeline.check_terraform_vms(layout)
                entry['detail'] = f'{len(found["vms"])} VMs of the Terraform state on node {found["node"]}, none tainted'
            elif check == 'run_lock':
                holder = _pipeline.RunLock(layout.lock).holder()
                lock = _pipeline.RunLock(layout.lock)
                if holder is None:
                    entry['detail'] = 'no run holds the lock'
                elif holder and not lock.holder_alive(holder):
                    entry.update(status='warning', detail=f'stale lock of run {holder.get("run_id")} '
                                 f'(pid {holder.get("pid")} is gone); the next run takes it over')
                else:
                    entry['detail'] = f'run {holder.get("run_id", "unknown")} holds the lock (pid {holder.get("pid", "?")})'
        except CheckError as err:
            entry.update(status='failed', detail=err.detail, where=err.where or '', remediation=err.remediation or '')
            if module.params['fail_on_error']:
                module.fail_json(msg=str(err), checks=results + [entry], **err.result())
        results.append(entry)
    return {'changed': False, 'checks': results}


def record_step(module: AnsibleModule, layout: StateLayout) -> dict:
    params = module.params
    if not params['step']:
        raise CheckError('pipeline_run_options', 'action step needs the step', where='step',
                         remediation='name the step (one of the pipeline\'s steps)')
    out = _run_steps.record_step(layout, params['step'], params['event'], records=params['steps'],
                                 started=params['started'], result=params['result'], hosts=params['hosts'],
                                 failures=params['failures'], revalidation=params['revalidation'],
                                 check_mode=module.check_mode)
    facts = {'eminfra_step_records': out.pop('records')}
    if 'started' in out:
        facts['eminfra_step_started'] = out.pop('started')
    out['ansible_facts'] = facts
    return out


def diagnose(module: AnsibleModule, layout: StateLayout) -> dict:
    params = module.params
    latest = {}
    try:
        text, values = LatestEnv(layout).read()
        latest = {'values': values, 'exists': text is not None}
    except CheckError as err:
        latest = {'error': str(err), 'remediation': getattr(err, 'remediation', '') or ''}
    module.params.update(fail_on_error=False)
    checks = run_checks(module, layout)['checks']
    token = params['token']
    token = None if not token or token.get('skipped') else token
    ssh = [entry for entry in params['ssh'] if isinstance(entry, dict)]
    unreachable = [entry.get(entry.get('ansible_loop_var', 'item')) for entry in ssh if 'state' not in entry]
    rows = _run_steps.diagnose(latest, checks, token, params['hosts'], unreachable)
    failed = [row['check'] for row in rows if row['status'] == 'failed']
    return {'changed': False, 'rows': rows, 'table': '\n'.join(_run_steps.render_rows(rows)), 'failed_checks': failed,
            'check_steps': dict(_run_steps.CHECK_STEP)}


def main() -> None:
    argument_spec = dict(
        action=dict(type='str', required=True, choices=['start', 'finish', 'check', 'step', 'diagnose', 'paths']),
        step=dict(type='str', choices=list(STEPS)),
        event=dict(type='str', choices=['start', 'done', 'failed'], default='done'),
        revalidation=dict(type='bool', default=False),
        started=dict(type='float'),
        result=dict(type='dict', default={}),
        hosts=dict(type='list', elements='str', default=[]),
        failures=dict(type='dict', default={}),
        token=dict(type='dict', default={}, no_log=False),  # the token check's result, never the secret
        ssh=dict(type='list', elements='raw', default=[]),
        resume=dict(type='bool', default=False),
        start_at=dict(type='str', choices=list(STEPS)),
        dry_run=dict(type='bool', default=False),
        status=dict(type='str', choices=['succeeded', 'failed'], default='succeeded'),
        plan=dict(type='dict', default={}),
        steps=dict(type='list', elements='dict', default=[]),
        checks=dict(type='list', elements='str', choices=list(CHECKS), default=[c for c in CHECKS if c != 'terraform_vms_present']),
        fail_on_error=dict(type='bool', default=True),
    )
    argument_spec.update(state_dir_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_JSONSCHEMA:
        module.fail_json(msg=missing_required_lib('jsonschema'), exception=JSONSCHEMA_IMPORT_ERROR)
    layout = StateLayout.resolve(module.params['state_dir'])
    action = module.params['action']
    try:
        if action == 'start':
            result = start(module, layout)
        elif action == 'finish':
            result = finish(module, layout)
        elif action == 'step':
            result = record_step(module, layout)
        elif action == 'diagnose':
            result = diagnose(module, layout)
        elif action == 'paths':
            result = {'changed': False, 'paths': layout.as_dict()}
        else:
            result = run_checks(module, layout)
    except CheckError as err:
        module.fail_json(msg=str(err), **err.result())
    except OSError as err:
        module.fail_json(msg=f'pipeline_state_write: {err.filename or layout.runs_dir}: {err.strerror or err}. '
                         'Remediation: make the state directory writable', failed_check='pipeline_state_write',
                         remediation='make the state directory writable')
    module.exit_json(**result)


if __name__ == '__main__':
    main()
