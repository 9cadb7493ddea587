#!/usr/bin/python
# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: latest_env
short_description: Record the pipeline's runs and steps in C(state/runs/latest.env)
version_added: 0.1.0
description:
  - Starts a run, merges keys, records a completed or failed step, or reads the run record
    C(runs/latest.env) under the state root back.
  - The file is the handoff contract's C(latest.env), written as shell-sourceable C(KEY='value') lines
    (C(. state/runs/latest.env) in bash reads back every value exactly), atomically (temporary file in
    the same directory, fsync, rename), and validated against the contract before it is written.
  - Every key the contract requires is always written. C(TERRAFORM_WORKDIR), C(TERRAFORM_OUTPUT_JSON)
    and C(ANSIBLE_INVENTORY_PATH) default to the contract's paths; C(TEMPLATE_UBUNTU_IMAGE),
    C(TEMPLATE_TALOS_IMAGE) and the C(PROXMOX_*) keys stay empty until a step sets them.
  - Besides the contract's keys it keeps C(RUN_STATUS), C(LAST_STEP_FAILED), C(LAST_FAILED_CHECK) and,
    during a dry run, C(DRY_RUN_LAST_STEP).
  - A failed step never advances C(LAST_STEP_COMPLETED). A dry run never advances it either, so a dry
    run can never make a later real run skip a step. Starting a run keeps the previous
    C(LAST_STEP_COMPLETED), which a resume needs.
  - Every run also keeps its own copy of the file under C(runs/<RUN_ID>/latest.env).
  - No secret ever enters the file. C(PROXMOX_TOKEN_SECRET), any key that names a secret (containing
    C(SECRET), C(PASSWORD), C(PRIVATE_KEY), C(TOKEN_VALUE), C(API_KEY), C(CREDENTIAL) ...) and any value
    holding one of O(secrets) are refused with the C(latest_env_secret) check, and the file on disk stays
    as it was.
author:
  - EM-Infra maintainers (@eminfra)
extends_documentation_fragment:
  - eminfra.pipeline.attributes
  - eminfra.pipeline.state
requirements:
  - jsonschema (Python library, on the host that runs the module)
options:
  path:
    description:
      - The run record to manage.
      - Defaults to C(runs/latest.env) under O(state_dir). The run's copy is written to C(<RUN_ID>/latest.env)
        beside it.
    type: path
  start_run:
    description:
      - Start a new run, with a new C(RUN_ID) (C(YYYYMMDDTHHMMSSZ-xxxxxx)), C(RUN_TIMESTAMP) (local time with
        its UTC offset), C(DRY_RUN) from O(dry_run) and C(RUN_STATUS=running).
      - Keeps C(LAST_STEP_COMPLETED) and every other key of the previous run; clears C(LAST_STEP_FAILED),
        C(LAST_FAILED_CHECK) and C(DRY_RUN_LAST_STEP).
    type: bool
    default: false
  dry_run:
    description:
      - Whether the run started with O(start_run=true) is a dry run. Only valid with O(start_run=true).
      - During a dry run a completed step is recorded as C(DRY_RUN_LAST_STEP), never as C(LAST_STEP_COMPLETED).
      - Defaults to V(false) when a run starts.
    type: bool
  values:
    description:
      - Keys to set, merged into the file. Values are strings; numbers are written as text and booleans as
        V(true) or V(false).
      - Keys that the run controls own (C(RUN_ID), C(RUN_TIMESTAMP), C(DRY_RUN), C(LAST_STEP_COMPLETED),
        C(RUN_STATUS), C(LAST_STEP_FAILED), C(LAST_FAILED_CHECK), C(DRY_RUN_LAST_STEP)) are refused here; use
        O(start_run), O(step) and O(run_status).
      - Keys that name a secret are refused.
    type: dict
    default: {}
  step:
    description:
      - A pipeline step to record, with O(step_status).
    type: str
    choices: [proxmox_access, templates, terraform_apply, ansible_inventory, ansible_base, ansible_docker]
  step_status:
    description:
      - V(completed) sets C(LAST_STEP_COMPLETED) to O(step) (C(DRY_RUN_LAST_STEP) during a dry run).
      - V(failed) sets C(LAST_STEP_FAILED) to O(step), C(LAST_FAILED_CHECK) to O(failed_check) and
        C(RUN_STATUS=failed); C(LAST_STEP_COMPLETED) does not move.
    type: str
    choices: [completed, failed]
    default: completed
  failed_check:
    description:
      - The id of the check that made O(step) fail, for example V(templates_present). Only with O(step_status=failed).
    type: str
  run_status:
    description:
      - Set C(RUN_STATUS). Applied after O(step), so it can close a run in the same task.
    type: str
    choices: [running, succeeded, failed]
  secrets:
    description:
      - Secret values that must never be written, for example the token secret read from C(proxmox.env).
      - The task fails with C(latest_env_secret) when any value of the file would contain one of them.
    type: list
    elements: str
    default: []
notes:
  - Without O(start_run), O(values), O(step) or O(run_status) the module only reads the file back.
  - Recording a step or setting keys needs a run in the file; start one first.
  - The keys follow the pipeline's handoff contract for C(latest.env); RUN_ID and the step names are those
    the other steps of the pipeline use.
attributes:
  check_mode:
    support: full
    details: Computes the new content, RUN_ID included, and reports it without writing anything.
  diff_mode:
    support: full
    details: Shows the file's text before and after.
  idempotent:
    support: partial
    details:
      - Merging keys and recording steps are idempotent; C(changed) is true only when the file's content changes.
      - O(start_run=true) always starts a new run with a new RUN_ID, so it always reports a change.
'''

EXAMPLES = r'''
- name: Start a run
  eminfra.pipeline.latest_env:
    start_run: true
    dry_run: "{{ eminfra_dry_run | default(false) | bool }}"
    state_dir: "{{ eminfra_state_dir | default(omit) }}"
  register: run

- name: Record that the token check passed
  eminfra.pipeline.latest_env:
    step: proxmox_access
    values:
      PROXMOX_API_URL: https://pve.example.internal:8006
      PROXMOX_NODE: pve
      PROXMOX_TOKEN_ID: pipeline@pve!full
    secrets:
      - "{{ proxmox_token_secret }}"

- name: Record a failed step and close the run
  eminfra.pipeline.latest_env:
    step: terraform_apply
    step_status: failed
    failed_check: templates_present

- name: Read the run record
  eminfra.pipeline.latest_env:
  register: latest

- name: Show where the last run stopped
  ansible.builtin.debug:
    msg: "{{ latest.run_id }} completed {{ latest['values']['LAST_STEP_COMPLETED'] | default('nothing', true) }}"
'''

RETURN = r'''
values:
  description:
    - The file's content as key-value pairs (after the change; in check mode, as it would be).
    - In templates write C(result['values']), because C(result.values) is the dictionary's C(values) method.
  returned: always
  type: dict
  sample:
    RUN_ID: 20260130T090000Z-a1b2c3
    RUN_TIMESTAMP: "2026-01-30T22:00:00+13:00"
    DRY_RUN: "false"
    LAST_STEP_COMPLETED: templates
    RUN_STATUS: running
path:
  description: The absolute path of the run record.
  returned: always
  type: str
  sample: /srv/eminfra/state/runs/latest.env
run_id:
  description: The current run's id; empty when the file does not exist yet.
  returned: always
  type: str
  sample: 20260130T090000Z-a1b2c3
run_dir:
  description: The directory that holds the run's own copy of the file and its step logs.
  returned: always
  type: str
  sample: /srv/eminfra/state/runs/20260130T090000Z-a1b2c3
dry_run:
  description: Whether the current run is a dry run.
  returned: always
  type: bool
  sample: false
exists:
  description: Whether the file exists (after the change; in check mode, as it would).
  returned: always
  type: bool
  sample: true
diff:
  description: The file's text before and after, also outside diff mode.
  returned: always
  type: dict
  contains:
    before:
      description: The text before; empty when the file did not exist.
      type: str
      returned: always
    after:
      description: The text after.
      type: str
      returned: always
failed_check:
  description: The id of the check that failed, for example V(latest_env_secret).
  returned: failure
  type: str
  sample: latest_env_secret
remediation:
  description: What the operator can do about the failure.
  returned: failure
  type: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import (
    HAS_JSONSCHEMA,
    JSONSCHEMA_IMPORT_ERROR,
)
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._latest_env import (
    RUN_STATUSES,
    STEP_STATUSES,
    LatestEnv,
)
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import (
    STEPS,
    StateLayout,
    state_dir_argument_spec,
)


def main() -> None:
    argument_spec = dict(
        path=dict(type='path'),
        start_run=dict(type='bool', default=False),
        dry_run=dict(type='bool'),
        values=dict(type='dict', default={}),
        step=dict(type='str', choices=list(STEPS)),
        step_status=dict(type='str', choices=list(STEP_STATUSES), default='completed'),
        failed_check=dict(type='str'),
        run_status=dict(type='str', choices=list(RUN_STATUSES)),
        secrets=dict(type='list', elements='str', no_log=True, default=[]),
    )
    argument_spec.update(state_dir_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_JSONSCHEMA:
        module.fail_json(msg=missing_required_lib('jsonschema'), exception=JSONSCHEMA_IMPORT_ERROR)

    params = module.params
    layout = StateLayout.resolve(params['state_dir'])
    record = LatestEnv(layout, params['path'])
    try:
        result = record.run(
            check_mode=module.check_mode,
            values=params['values'],
            start_run=params['start_run'],
            dry_run=params['dry_run'],
            step=params['step'],
            step_status=params['step_status'],
            failed_check=params['failed_check'],
            run_status=params['run_status'],
            secrets=params['secrets'],
        )
    except CheckError as err:
        module.fail_json(msg=str(err), path=record.path, **err.result())
    except OSError as err:
        module.fail_json(msg=f'latest_env_write: {record.path}: {err.strerror or err}. Remediation: make the '
                         'state directory writable', failed_check='latest_env_write', path=record.path,
                         remediation='make the state directory writable')
    module.exit_json(**result)


if __name__ == '__main__':
    main()
