# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A run's bookkeeping of its steps: what each step records and how diagnostics reads the state.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

* ``record_step`` records one step's end (or its re-validation's) from the step's own result: in
  ``runs/latest.env`` (through ``_latest_env``) and in the run's step records, with its status,
  duration, artefacts and, for a failure, the failed check and its remediation as data. A failure
  that is already recorded for the step (by a role or module of the operator's) is not recorded
  twice.
* ``diagnose`` turns the read-only checks into the diagnostics table's rows; checks of steps after
  LAST_STEP_COMPLETED are ``pending``, not failures.
"""

from __future__ import annotations

import time

from ansible_collections.eminfra.pipeline.plugins.module_utils._latest_env import LatestEnv
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import STEP, STEPS, StateLayout

REMEDIATION_RESUME = 'ansible-playbook playbooks/site.yml -e eminfra_resume=true'

#: Which step each read-only check belongs to (its step has not run yet: the check is pending).
CHECK_STEP = {
    'templates_present': 'templates',
    'terraform_backend': 'terraform_apply',
    'terraform_outputs_valid': 'terraform_apply',
    'hosts_reachable': 'ansible_inventory',
}


def step_table() -> list[dict]:
    """The steps as data for a playbook: name, role, result variable, nodes' group, re-validated."""
    return [{'name': str(step), 'role': step.role, 'result': step.result, 'hosts': step.hosts,
             'revalidated': step.revalidated, 'dry_run_requires': list(step.dry_run_requires)} for step in STEPS]


def _values(step: str, result: dict) -> dict:
    """The latest.env keys a completed step records, from its role's result."""
    if step == 'proxmox_access':
        return dict(result.get('proxmox_env') or {})
    if step == 'templates':
        return {'TEMPLATE_UBUNTU_IMAGE': (result.get('ubuntu') or {}).get('path'),
                'TEMPLATE_TALOS_IMAGE': (result.get('talos') or {}).get('path')}
    if step == 'terraform_apply':
        return {'TERRAFORM_WORKDIR': result.get('workdir'), 'TERRAFORM_OUTPUT_JSON': result.get('outputs_path')}
    return {}


def _artefacts(layout: StateLayout, step: str, result: dict, hosts: list, dry_run: bool, revalidation: bool) -> list:
    """What the step left, for the run summary: paths, or what the nodes answered."""
    info = STEP[step]
    if step == 'ansible_inventory':
        return ['SSH answers on: ' + ', '.join(hosts)]
    if info.hosts:
        if not hosts:
            return [f'group {info.hosts} has no hosts: nothing to configure']
        return ['configured: ' + ', '.join(hosts)]
    if revalidation:
        return [artefact for check in result.get('checks') or [] for artefact in check.get('artefacts') or []]
    if step == 'proxmox_access':
        return [f'{layout.latest_env} ({", ".join(info.keys)})']
    if step == 'templates':
        paths = [entry.get('path') for entry in result.values() if isinstance(entry, dict) and entry.get('path')]
        return ([] if dry_run else [layout.manifest]) + paths
    if step == 'terraform_apply':
        if dry_run or not result:
            return []
        backend = result.get('backend') or {}
        state = result.get('state_path') if backend.get('type', 'local') == 'local' else \
            f'PostgreSQL {backend.get("database")} schema {backend.get("schema_name")}'
        return [result.get('outputs_path'), state, result.get('log_path')]
    return []


def _status(step: str, result: dict, dry_run: bool, revalidation: bool) -> str:
    info = STEP[step]
    if revalidation:
        return 'revalidated'
    if not dry_run:
        return 'completed'
    if info.dry_run_requires:
        if result:
            return 'planned (dry run)'
        before = STEPS[STEPS.index(step) - 1]
        return f'not planned (dry run): {info.dry_run_requires[0]} fails until the {before} step has run'
    return 'checked (dry run)'


def _failure(step: str, result: dict, failures: dict, revalidation: bool) -> tuple[str, str, object]:
    """(failed check, message, remediation) of a failed step, from the failed task's result (and, for
    a node step, each failed node's)."""
    info = STEP[step]
    if failures:
        nodes = list(failures)  # the play's order
        first = failures[nodes[0]] or {}
        check = first.get('failed_check') or info.check
        return check, (f'{check}: {", ".join(nodes)}: {first.get("msg") or "failed"}. Remediation: fix the cause on '
                       f'the node, then resume with {REMEDIATION_RESUME}'), first.get('remediation') or ''
    loop = result.get('results')
    if step == 'ansible_inventory' and isinstance(loop, list):
        nodes = [entry.get(entry.get('ansible_loop_var', 'item')) for entry in loop
                 if isinstance(entry, dict) and entry.get('failed')]
        timeout = next((entry.get('invocation', {}).get('module_args', {}).get('timeout') for entry in loop
                        if isinstance(entry, dict) and entry.get('failed')), None)
        within = f' within {timeout} s' if timeout is not None else ''
        remediation = f'check that the VMs run and are reachable, then resume with {REMEDIATION_RESUME}'
        return 'hosts_reachable', (f'hosts_reachable: {", ".join(str(node) for node in nodes)}: no SSH answer{within} '
                                   f'(addresses: ansible-inventory --list). Remediation: {remediation}'), remediation
    check = result.get('failed_check') or (info.revalidation_check if revalidation else info.check)
    remediation = result.get('remediation') or ''
    if isinstance(remediation, list):
        remediation = '; '.join(str(line) for line in remediation)
    return check, result.get('msg') or 'see the task output above', remediation


def record_step(layout: StateLayout, step: str, event: str, records: list | None = None, started: float | None = None,
                result: dict | None = None, hosts: list | None = None, failures: dict | None = None,
                revalidation: bool = False, now: float | None = None, check_mode: bool = False) -> dict:
    """Record the start, end or failure of ``step`` (see the module docstring); in check mode the
    record is computed and latest.env is left as it is."""
    now = time.time() if now is None else now
    records = [entry for entry in records or [] if isinstance(entry, dict)]
    if event == 'start':
        return {'changed': False, 'started': now, 'records': records, 'recorded': False}
    info = STEP[step]
    result = result or {}
    hosts = list(hosts or [])
    latest = LatestEnv(layout)
    dummy, current = latest.read()
    dry_run = current.get('DRY_RUN') == 'true'
    entry = {'step': step, 'duration': round(now - float(started), 1) if started is not None else 0.0}
    out = {'changed': False, 'recorded': False}
    if event == 'done':
        entry.update(status=_status(step, result, dry_run, revalidation),
                     artefacts=_artefacts(layout, step, result, hosts, dry_run, revalidation))
        # A re-validation leaves the record as it is; a step that records keys records only when its
        # work ran (a dry run's terraform_apply without templates plans nothing).
        if not revalidation and (not info.keys or result):
            latest.run(check_mode=check_mode, step=step, step_status='completed', values=_values(step, result))
            out['recorded'] = True
    else:
        check, msg, remediation = _failure(step, result, failures or {}, revalidation)
        if current.get('LAST_STEP_FAILED') == step and current.get('RUN_STATUS') == 'failed':
            check = current.get('LAST_FAILED_CHECK') or check  # already recorded: never twice
        else:
            values = dict(result.get('proxmox_env') or {}) if step == 'proxmox_access' and not revalidation else {}
            latest.run(check_mode=check_mode, step=step, step_status='failed', failed_check=check, values=values)
            out['recorded'] = True
        entry.update(status='failed', failed_check=check, artefacts=[])
        out.update(failed_check=check, msg=f'{step} failed: {msg}', remediation=remediation)
    out.update(record=entry, records=records + [entry], changed=out['recorded'])
    return out


# ------------------------------------------------------------------ diagnostics

def _latest_rows(latest: dict) -> list[dict]:
    if latest.get('error'):
        first = {'check': 'latest_env_valid', 'status': 'failed', 'detail': latest['error'],
                 'remediation': latest.get('remediation', '')}
        values = {}
    else:
        values = latest.get('values') or {}
        exists = latest.get('exists')
        first = {'check': 'latest_env_valid', 'status': 'ok' if exists else 'pending',
                 'detail': (f'run {values.get("RUN_ID", "")} {values.get("RUN_STATUS", "")}; LAST_STEP_COMPLETED='
                            f'{values.get("LAST_STEP_COMPLETED", "")}') if exists else 'no run recorded yet',
                 'remediation': '' if exists else 'ansible-playbook playbooks/site.yml'}
    if values.get('LAST_STEP_FAILED'):
        last_run = {'check': 'last_run', 'status': 'failed',
                    'detail': f'{values["LAST_STEP_FAILED"]} failed with {values.get("LAST_FAILED_CHECK") or "?"}',
                    'remediation': f'fix the cause, then {REMEDIATION_RESUME}'}
    elif values.get('RUN_ID'):
        last_run = {'check': 'last_run', 'status': 'ok', 'detail': f'run {values["RUN_ID"]} {values.get("RUN_STATUS", "")}',
                    'remediation': ''}
    else:
        last_run = {'check': 'last_run', 'status': 'pending', 'detail': 'no run yet', 'remediation': ''}
    return [first, last_run]


def _token_row(token: dict | None) -> dict:
    if token is None:
        return {'check': 'token_valid', 'status': 'pending', 'detail': 'not checked: proxmox.env is missing or invalid',
                'remediation': 'fix proxmox.env first'}
    if token.get('failed_check'):
        remediation = token.get('remediation') or ''
        return {'check': token['failed_check'], 'status': 'failed', 'detail': token.get('msg', ''),
                'remediation': remediation if isinstance(remediation, str) else '; '.join(remediation)}
    return {'check': 'token_valid', 'status': 'ok',
            'detail': 'token authenticates; node and privileges for every later step', 'remediation': ''}


def _ssh_row(hosts: list, unreachable: list) -> dict:
    if unreachable:
        return {'check': 'hosts_reachable', 'status': 'failed',
                'detail': 'no SSH answer from ' + ', '.join(dict.fromkeys(unreachable)),
                'remediation': 'check that the VMs run and are reachable (ansible-inventory --list shows the addresses)'}
    return {'check': 'hosts_reachable', 'status': 'ok' if hosts else 'pending',
            'detail': f'{len(hosts)} nodes answer SSH' if hosts else 'the inventory has no hosts', 'remediation': ''}


def diagnose(latest: dict, checks: list[dict], token: dict | None, hosts: list, unreachable: list) -> list[dict]:
    """The diagnostics table's rows, in order: the run record, the file checks (those of steps not yet
    completed as pending when they fail), the token, SSH."""
    values = latest.get('values') or {}
    last = values.get('LAST_STEP_COMPLETED') or ''
    done = STEPS.index(last) + 1 if last in STEPS else 0
    pending = {check for check, step in CHECK_STEP.items() if step in STEPS[done:]}
    files = [dict(check) for check in checks]
    ssh = _ssh_row(hosts, unreachable)
    if ssh['status'] == 'failed' and 'hosts_reachable' in pending:
        ssh['status'] = 'pending'
    return (_latest_rows(latest)
            + [row for row in files if row['check'] not in pending]
            + [row for row in files if row['check'] in pending and row['status'] == 'ok']
            + [dict(row, status='pending') for row in files if row['check'] in pending and row['status'] != 'ok']
            + [_token_row(token), ssh])


def render_rows(rows: list[dict]) -> list[str]:
    """The table an operator reads: check, status, detail, and the remediation of what is not ok."""
    lines = ['%-24s %-8s %s' % ('CHECK', 'STATUS', 'DETAIL / REMEDIATION')]
    for row in rows:
        lines.append('%-24s %-8s %s' % (row['check'], row['status'], row['detail']))
        if row.get('remediation') and row['status'] != 'ok':
            lines.append('%-24s %-8s %s' % ('', '', 'remediation: ' + row['remediation']))
    return lines
