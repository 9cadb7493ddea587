#!/usr/bin/python
# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: terraform_apply_wrapper
short_description: Plan and apply a Terraform environment of the pipeline and write outputs.json
version_added: 0.1.0
description:
  - Runs the pipeline's Terraform root module, C(terraform/environments/k3s-dev) (the bpg/proxmox provider), for
    the C(terraform_apply) step.
  - Refuses with the C(templates_present) check when the template manifest is missing, invalid, or lacks
    an artefact that the enabled nodes of the intent need; nothing is run then.
  - Copies the configuration into the workdir and keeps the data dir (E(TF_DATA_DIR)), the local state,
    plans and logs there, so the repository's C(terraform/) stays clean.
  - Runs C(terraform plan -detailed-exitcode -out) and applies that saved plan; C(changed) comes from the
    exit code (0 no changes, 2 changes) and the counts from C(terraform show -json), never from text.
  - Passes variables as E(TF_VAR_*) and the Proxmox token only in the environment of C(plan) and C(apply)
    (E(PROXMOX_VE_ENDPOINT), E(PROXMOX_VE_API_TOKEN)); never on the command line or in a file. The API certificate
    is verified against C(PROXMOX_CA_BUNDLE) of C(proxmox.env) (as E(SSL_CERT_FILE) of Terraform only), and
    E(PROXMOX_VE_INSECURE) is set only when C(PROXMOX_TLS_VERIFY=false).
  - Finds the provider the way Terraform does, through the CLI configuration, which is an inherited E(TF_CLI_CONFIG_FILE)
    naming an existing file, else the project's C(.cache/terraform/terraformrc) that C(make setup) writes beside the
    provider mirror it builds from the provider's Go module, else none (C(terraform init) from the registry).
  - Writes O(outputs_path) from C(terraform output -json), normalised to the outputs contract, validated
    (C(terraform_outputs_valid)), without sensitive outputs, atomically.
author:
  - EM-Infra maintainers (@eminfra)
extends_documentation_fragment:
  - eminfra.pipeline.state
  - eminfra.pipeline.attributes
attributes:
  check_mode:
    support: full
    details: Check mode runs the plan only and returns its counts and drift; nothing is applied and
      O(outputs_path) is not written. The workdir still gets the configuration copy, C(terraform init)
      when needed, the VM observation, the saved plan and the log.
  diff_mode:
    support: none
    details: The plan's counts and drift are returned instead.
  idempotent:
    support: full
    details: A second run with the same intent, manifest and infrastructure plans no change and reports
      C(changed=false).
options:
  project_path:
    description:
      - The Terraform root module, a directory under C(terraform/environments/). Relative paths are taken from the
        project root.
    type: path
    default: terraform/environments/k3s-dev
  workdir:
    description:
      - Where the configuration copy, data dir, state, plans and logs live.
      - Defaults to the contract's C(state/cache/terraform/) under O(state_dir).
    type: path
  manifest:
    description:
      - The template manifest; defaults to the contract's C(state/cache/templates/manifest.json).
    type: path
  outputs_path:
    description:
      - Where outputs.json is written; defaults to C(outputs.json) in O(workdir).
    type: path
  intent_cluster_file:
    description:
      - The cluster intent (C(inventory/dev/cluster.yaml)).
      - With O(intent_nodes_file), both files are validated (check C(intent_valid)) and what was validated is
        written as JSON to C(<workdir>/intent/cluster.json) and C(nodes.json), which Terraform reads through the
        variables C(intent_cluster_file) and C(intent_nodes_file) (unless O(variables) sets either). So Terraform
        and the pipeline read one and the same intent, never a YAML 1.2 reading of what was validated as YAML 1.1.
    type: path
  intent_nodes_file:
    description:
      - The nodes intent, read to know which artefacts the enabled nodes need. Without it both the Ubuntu
        and the Talos artefact are required.
      - Handed to Terraform validated, as JSON, as described for O(intent_cluster_file).
    type: path
  variables:
    description:
      - Terraform input variables, passed as E(TF_VAR_name) in the environment (never C(-var)). Values that
        are not strings are passed as JSON.
      - C(manifest_file) is always set from O(manifest); a value holding the token secret is refused.
    type: dict
    default: {}
  proxmox_env_file:
    description:
      - The Proxmox credentials (the contract's C(state/proxmox.env), mode 0600). Their token reaches
        Terraform only through the environment of C(plan) and C(apply).
      - Defaults to C(proxmox.env) under O(state_dir). Plan and apply refuse without it (C(proxmox_env_present),
        C(proxmox_env_valid)) before Terraform runs; O(validate_only) does not need it.
    type: path
  state:
    description:
      - V(present) plans and applies the environment; V(absent) plans and applies a destroy.
    type: str
    choices: [present, absent]
    default: present
  validate_only:
    description:
      - Only re-validate, as a resume does before it skips the step. O(outputs_path) must exist, meet the
        outputs contract and equal what C(terraform output -json) gives from the current state. Nothing is
        planned or applied; a mismatch fails with C(terraform_outputs_valid).
    type: bool
    default: false
  binary_path:
    description:
      - The Terraform command. Defaults to C(terraform), then C(tofu), on E(PATH).
    type: path
  lock_timeout:
    description:
      - How long Terraform waits for the state lock (C(-lock-timeout)).
    type: str
    default: 0s
  parallelism:
    description:
      - Concurrent operations (C(-parallelism)).
    type: int
    default: 10
  timeout:
    description:
      - Seconds the whole run may take; at the end Terraform is interrupted (SIGINT) so it can save its
        state, then stopped.
    type: int
    default: 3600
  backend:
    description:
      - Where the Terraform state is kept.
      - V(local) (the default) keeps it in O(workdir) (C(<workdir>/<environment>/terraform.tfstate)), locked with
        Terraform's local lock file.
      - V(pg) keeps it in PostgreSQL with Terraform's C(pg) backend, locked with PostgreSQL advisory locks, so that
        several operators or a CI runner can share it. The connection string is read from O(backend_env_file) and
        reaches Terraform only as E(PG_CONN_STR) in its environment; the workdir's copy of the configuration gets a
        generated C(backend_override.tf) (the repository's C(backend.tf) stays local).
      - Switching backends without O(migrate_state) is refused (C(terraform_backend_changed)), since Terraform
        would start from an empty state.
    type: str
    choices: [local, pg]
    default: local
    version_added: 0.1.0
  backend_env_file:
    description:
      - The pg backend's settings, a C(KEY=VALUE) file with mode 0600 (checked like C(proxmox.env)) holding
        C(PG_CONN_STR) (a C(postgres://) URI or C(key=value) settings, a secret) and optionally C(PG_SCHEMA_NAME)
        (default C(terraform_remote_state)).
      - Defaults to C(terraform_backend.env) under O(state_dir). Read when O(backend=pg), and for a migration from
        pg to local. Failures are C(terraform_backend_env_present) and C(terraform_backend_env_valid).
    type: path
    version_added: 0.1.0
  migrate_state:
    description:
      - When the workdir was last initialised with the other backend, copy the state to O(backend) with
        C(terraform init -migrate-state -force-copy) before planning, and report it in RV(migrated).
      - After a migration from local, the local state file is kept as C(terraform.tfstate.migrated-to-pg). After
        a migration from pg, the state stays in PostgreSQL too; other operators must switch back as well.
      - Not in check mode (C(terraform_backend_migration)). Once migrated, further runs have nothing to migrate.
    type: bool
    default: false
    version_added: 0.1.0
  allow_replace:
    description:
      - Apply a plan that destroys or replaces a VM. Without it such a plan (a VM the intent still names
        but with a changed vmid or other setting the provider cannot change in place, or a node removed or
        disabled in the intent) fails with the C(plan_destroys_vm) check, naming the VMs, before anything is
        applied, in check mode too.
      - O(state=absent) is itself the request to destroy the VMs and needs no O(allow_replace).
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - Every run writes its full Terraform log to a new file under C(<workdir>/<environment>/logs/); the last
    20 are kept. The task result carries the path, the counts and the drift.
seealso:
  - name: Terraform CLI automation
    description: Running Terraform in automation (TF_IN_AUTOMATION, saved plans).
    link: https://developer.hashicorp.com/terraform/tutorials/automation/automate-terraform
'''

EXAMPLES = r'''
- name: Create the VMs of the dev cluster
  eminfra.pipeline.terraform_apply_wrapper:
    project_path: terraform/environments/k3s-dev
    intent_cluster_file: inventory/dev/cluster.yaml
    intent_nodes_file: inventory/dev/nodes.yaml
    variables:
      ssh_public_key: "{{ lookup('ansible.builtin.file', 'state/ssh/id_ed25519.pub') }}"
  register: terraform_result

- name: Plan only (drift and counts)
  eminfra.pipeline.terraform_apply_wrapper:
    intent_cluster_file: inventory/dev/cluster.yaml
    intent_nodes_file: inventory/dev/nodes.yaml
  check_mode: true

- name: Before a resume skips the step, check outputs.json against the Terraform state
  eminfra.pipeline.terraform_apply_wrapper:
    validate_only: true

- name: Keep the state in PostgreSQL (state/terraform_backend.env), copying the local state over once
  eminfra.pipeline.terraform_apply_wrapper:
    intent_cluster_file: inventory/dev/cluster.yaml
    intent_nodes_file: inventory/dev/nodes.yaml
    backend: pg
    migrate_state: true
    lock_timeout: 5m

- name: Remove the VMs
  eminfra.pipeline.terraform_apply_wrapper:
    intent_cluster_file: inventory/dev/cluster.yaml
    intent_nodes_file: inventory/dev/nodes.yaml
    state: absent
'''

RETURN = r'''
counts:
  description: Resource changes of the plan, from C(terraform show -json) (a replacement counts as one add and one destroy).
  returned: unless O(validate_only=true)
  type: dict
  sample: {add: 4, change: 0, destroy: 0}
drift:
  description: Resources Terraform found changed outside Terraform (C(resource_drift) of the plan).
  returned: unless O(validate_only=true)
  type: list
  elements: dict
  sample:
    - address: proxmox_virtual_environment_vm.vm["cp-1"]
      actions: [delete]
replaced:
  description: Addresses the plan replaces (destroys and creates again).
  returned: unless O(validate_only=true)
  type: list
  elements: str
  sample:
    - proxmox_virtual_environment_vm.vm["cp-1"]
output_changes:
  description: Names of the Terraform outputs the plan changes.
  returned: unless O(validate_only=true)
  type: list
  elements: str
initialised:
  description: Whether C(terraform init) ran (the configuration, binary or state path changed).
  returned: always
  type: bool
applied:
  description: Whether the saved plan was applied.
  returned: unless O(validate_only=true)
  type: bool
log_path:
  description: The full Terraform log of this run.
  returned: always
  type: str
  sample: /srv/pipeline/state/cache/terraform/k3s-dev/logs/20261122T003000Z-4242.log
plan_path:
  description: The saved plan of this run.
  returned: unless O(validate_only=true)
  type: str
state_path:
  description: The local Terraform state file (with O(backend=pg) the state is in PostgreSQL instead, see RV(backend)).
  returned: always
  type: str
workdir:
  description: The Terraform workdir (TERRAFORM_WORKDIR of latest.env).
  returned: always
  type: str
outputs_path:
  description: The outputs.json path (TERRAFORM_OUTPUT_JSON of latest.env).
  returned: always
  type: str
binary:
  description: The Terraform command that ran.
  returned: always
  type: str
cli_config:
  description: The Terraform CLI configuration of the run (E(TF_CLI_CONFIG_FILE)), which says where the provider comes from.
  returned: always
  type: str
backend:
  description:
    - Where the state is; C(type) is V(local) (with C(state_path)) or V(pg) (with C(database) as host:port/name,
      C(schema_name) and C(env_file); never the connection string).
  returned: always
  type: dict
  sample: {type: pg, database: db.example.org:5432/terraform, schema_name: eminfra_k3s_dev,
           env_file: /srv/pipeline/state/terraform_backend.env}
  version_added: 0.1.0
migrated:
  description: The state migration of this run (C(from), C(to)), or null when nothing was migrated.
  returned: unless O(validate_only=true)
  type: dict
  sample: {from: local, to: pg}
  version_added: 0.1.0
outputs:
  description: The content written to outputs.json.
  returned: when not in check mode
  type: dict
  sample:
    schema_version: 1
    nodes:
      - {name: util-1, ipv4: 10.20.0.41, ssh_user: ubuntu, ssh_port: 22, groups: [base]}
    talos_nodes:
      - {name: cp-1, ipv4: 10.20.0.11, role: controlplane, vmid: 201}
outputs_changed:
  description: Whether outputs.json was (re)written.
  returned: when not in check mode and not O(validate_only)
  type: bool
outputs_valid:
  description: outputs.json meets the contract and matches the Terraform state.
  returned: when O(validate_only=true)
  type: bool
state_restored:
  description:
    - When the Terraform state was empty or not JSON (an apply killed while Terraform wrote it) - where it was
      restored from (C(terraform.tfstate.pre-apply), the snapshot taken before that apply, or Terraform's
      C(terraform.tfstate.backup)), why, and where the damaged file is kept. Empty otherwise.
  returned: when not O(validate_only)
  type: dict
recovered:
  description:
    - What was done to converge the Terraform state with the node before the plan - C(adopted), the VMs of the intent
      that a failed or killed apply created and the state lost, imported with C(terraform import); C(untainted), the
      VMs tainted by a failed create that exist on the node. A VM with an intent's vmid that is not the pipeline's
      fails the task with the check C(terraform_vm_adopt) instead.
  returned: when not O(validate_only)
  type: dict
  sample: {adopted: [{name: cp-1, vmid: 201, address: 'proxmox_virtual_environment_vm.vm["cp-1"]'}], untainted: []}
failed_check:
  description:
    - The check that failed (C(templates_present), C(intent_valid), C(plan_destroys_vm), C(terraform_apply),
      C(terraform_outputs_valid), ...).
    - With a state backend also C(terraform_state_locked) (another run holds the state lock; the message names the
      holder), C(terraform_backend_auth) (PostgreSQL refused the credentials), C(terraform_backend_unreachable)
      (the database does not answer), C(terraform_backend_changed), C(terraform_backend_env_present),
      C(terraform_backend_env_valid).
  returned: failure
  type: str
remediation:
  description: What to do about the failure.
  returned: failure
  type: str
'''

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.eminfra.pipeline.plugins.module_utils import _manifest
from ansible_collections.eminfra.pipeline.plugins.module_utils import _proxmox_env
from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform
from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform_backend
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import HAS_JSONSCHEMA, JSONSCHEMA_IMPORT_ERROR
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import StateLayout, find_project_root, state_dir_argument_spec

ARGUMENT_SPEC = dict(
    **state_dir_argument_spec(),
    project_path=dict(type='path', default='terraform/environments/k3s-dev'),
    workdir=dict(type='path'),
    manifest=dict(type='path'),
    outputs_path=dict(type='path'),
    intent_cluster_file=dict(type='path'),
    intent_nodes_file=dict(type='path'),
    variables=dict(type='dict', default={}),
    proxmox_env_file=dict(type='path'),
    state=dict(type='str', choices=['present', 'absent'], default='present'),
    validate_only=dict(type='bool', default=False),
    binary_path=dict(type='path'),
    lock_timeout=dict(type='str', default='0s'),
    parallelism=dict(type='int', default=10),
    timeout=dict(type='int', default=3600),
    backend=dict(type='str', choices=['local', 'pg'], default='local'),
    backend_env_file=dict(type='path'),
    migrate_state=dict(type='bool', default=False),
    allow_replace=dict(type='bool', default=False),
)


def _from_root(root: str, path: str | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.join(root, path))


def configure_backend(module: AnsibleModule, runner, env_file: str) -> None:
    """The state backend: the local default, or pg with the connection string of ``env_file``."""
    params = module.params
    pg = None
    if params['backend'] == 'pg' or (params['migrate_state'] and os.path.lexists(env_file)):
        pg = _terraform_backend.load_backend_env(env_file)
        module.no_log_values.update(pg.secrets)
    runner.use_backend(params['backend'], pg=pg, migrate_state=params['migrate_state'])


def run_module(module: AnsibleModule) -> dict:
    params = module.params
    root = find_project_root()
    layout = StateLayout.resolve(params['state_dir'], project_root=root)
    workdir = _from_root(root, params['workdir']) or layout.terraform_workdir
    env_file = _from_root(root, params['proxmox_env_file']) or layout.proxmox_env
    manifest = _from_root(root, params['manifest']) or layout.manifest
    intent_nodes_file = _from_root(root, params['intent_nodes_file'])
    if not params['validate_only'] and params['state'] == 'present':
        # The steps' order: missing templates are reported as such, before the credentials.
        _manifest.templates_present(manifest, intent_nodes_file, placed=True)
    # Plan and apply need the provider's credentials (proxmox_env_present/proxmox_env_valid when
    # they are missing or unusable); re-validation only reads the state, with or without them.
    proxmox = None
    if not params['validate_only'] or os.path.lexists(env_file):
        proxmox = _proxmox_env.load(env_file)
        # Belt and braces: Ansible masks the secret in anything the task prints.
        module.no_log_values.update(proxmox.no_log_values())
    variables = dict(params['variables'])
    intent_cluster_file = _from_root(root, params['intent_cluster_file'])
    if (intent_cluster_file and intent_nodes_file and not params['validate_only']
            and not {'intent_cluster_file', 'intent_nodes_file'} & set(variables)):
        # Terraform reads the intent as validated (intent_valid), as JSON: one reading, never two.
        variables.update(_terraform.write_validated_intent(intent_cluster_file, intent_nodes_file, workdir))
    for name, value in (('intent_cluster_file', intent_cluster_file),
                        ('intent_nodes_file', intent_nodes_file)):
        if value and name not in variables:
            variables[name] = value
    runner = _terraform.TerraformRunner(
        run_command=_terraform.default_run_command,
        binary=_terraform.find_binary(params['binary_path']),
        project_path=_from_root(root, params['project_path']),
        workdir=workdir,
        manifest=manifest,
        outputs_path=_from_root(root, params['outputs_path']),
        variables=variables,
        proxmox=proxmox,
        lock_timeout=params['lock_timeout'],
        parallelism=params['parallelism'],
        timeout=params['timeout'],
    )
    runner.allow_replace = params['allow_replace']
    configure_backend(module, runner, _from_root(root, params['backend_env_file']) or layout.terraform_backend_env)
    try:
        if params['validate_only']:
            return runner.validate_outputs()
        return runner.execute(state=params['state'], check_mode=module.check_mode,
                              intent_nodes_file=intent_nodes_file)
    except CheckError as exc:
        failure = {'workdir': workdir}
        if os.path.isfile(runner.log_path):
            failure['log_path'] = runner.log_path
        failure.update({k: runner.scrub(v) if isinstance(v, str) else v for k, v in exc.result().items()})
        module.fail_json(msg=runner.scrub(str(exc)), **failure)
    return {}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if not HAS_JSONSCHEMA:
        module.fail_json(msg=missing_required_lib('jsonschema'), exception=JSONSCHEMA_IMPORT_ERROR)
    try:
        result = run_module(module)
    except CheckError as exc:
        module.fail_json(msg=str(exc), **exc.result())
    except OSError as exc:
        module.fail_json(msg=f'terraform_apply: {exc}', failed_check='terraform_apply',
                         remediation='check the permissions of the state directory', exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == '__main__':
    main()
