#!/usr/bin/python
# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: proxmox_token_check
short_description: Check a Proxmox VE API token for every privilege the pipeline's later steps need
version_added: 0.1.0
description:
  - Validates C(state/proxmox.env) (or the same values given as options) before any network call,
    namely its presence, file mode (refused when the group or others can read it), syntax, the
    contract's keys, the token id form C(user@realm!tokenid) and the URL form.
  - Then asks the Proxmox VE API, read-only, through proxmoxer with token authentication
    C(GET /version) (token valid, Proxmox VE 8.0 or newer), C(GET /nodes) and
    C(GET /nodes/{node}/status) (node present and online), C(GET /access/permissions) (the token's
    privileges) and C(GET /nodes/{node}/storage) (content types of the storages).
  - Evaluates the privileges each requested step needs (templates, terraform_apply,
    ansible_inventory) with Proxmox VE's propagation rules and, when some are missing, returns the
    exact C(pveum) commands that grant them.
  - Fails when a check fails; the message starts with the check id and ends with the remediation.
    The token secret never appears in any result or message.
author:
  - EM-Infra maintainers (@eminfra)
extends_documentation_fragment:
  - eminfra.pipeline.state
  - eminfra.pipeline.attributes
  - eminfra.pipeline.attributes.read_only
options:
  env_file:
    description:
      - Path of the C(proxmox.env) file.
      - Defaults to C(proxmox.env) under the state root (O(state_dir)) when O(api_url) is not set.
      - Mutually exclusive with O(api_url).
    type: path
  api_url:
    description:
      - Base URL of the API, for example C(https://pve.example.org:8006); a trailing C(/api2/json) is accepted.
      - Requires O(node), O(token_id) and O(token_secret).
    type: str
  node:
    description: The Proxmox VE node the pipeline uses.
    type: str
  token_id:
    description: The API token id, C(user@realm!tokenid).
    type: str
  token_secret:
    description: The API token secret.
    type: str
  validate_certs:
    description: Verify the API's TLS certificate. Only with O(api_url).
    type: bool
    default: true
  ca_bundle:
    description: PEM file of the CA that signed the API's certificate. Only with O(api_url).
    type: path
  steps:
    description: The later steps to check privileges for.
    type: list
    elements: str
    choices: [templates, terraform_apply, ansible_inventory]
    default: [templates, terraform_apply, ansible_inventory]
  cluster_file:
    description:
      - Intent file with C(cluster.proxmox.vm_storage), C(template_storage) and C(bridge).
      - Defaults to C(inventory/dev/cluster.yaml) under the project root.
      - Not read when O(vm_storage), O(template_storage) and O(bridge) are all set.
    type: path
  nodes_file:
    description:
      - Intent file with C(nodes[]) (their C(pci_mapping) and C(enabled)).
      - Defaults to C(inventory/dev/nodes.yaml) under the project root.
    type: path
  vm_storage:
    description: Storage for VM disks; overrides the intent.
    type: str
  template_storage:
    description: Storage for template artefacts (import source); overrides the intent.
    type: str
  bridge:
    description: Bridge the VM NICs attach to; overrides the intent.
    type: str
  pci_mappings:
    description:
      - PCI resource mapping ids used by GPU nodes; overrides the intent.
      - A raw host PCI address such as C(0000:01:00.0) is refused, since a token cannot set C(hostpci host=).
    type: list
    elements: str
  containers:
    description:
      - Whether the intent has containers (C(guest=lxc)), which need the container privileges and the
        C(rootdir) and C(vztmpl) content types; overrides the intent.
    type: bool
    version_added: 0.1.0
  timeout:
    description: Seconds to wait for each API answer.
    type: float
    default: 10
  retries:
    description: Retries of a read after a 5xx answer or a connection error (never after 4xx or TLS errors).
    type: int
    default: 3
requirements:
  - proxmoxer >= 2.0
  - requests
notes:
  - Proxmox answers a wrong secret, an unknown or expired token and a disabled user with the same
    C(401 Authentication failed!); the C(token_valid) failure names all of them.
seealso:
  - name: Proxmox VE user management (API tokens, privileges)
    description: Roles, privileges, ACL paths and privilege-separated tokens.
    link: https://pve.proxmox.com/pve-docs/chapter-pveum.html
"""

EXAMPLES = r"""
- name: Check the token in state/proxmox.env for every later step
  eminfra.pipeline.proxmox_token_check:
    env_file: "{{ eminfra_state_dir }}/proxmox.env"
  register: proxmox_access

- name: Check only what the templates step needs, values as options
  eminfra.pipeline.proxmox_token_check:
    api_url: https://pve.example.org:8006
    node: pve
    token_id: pipeline@pve!full
    token_secret: "{{ vault_proxmox_token_secret }}"
    ca_bundle: /etc/ssl/pve-root-ca.pem
    steps: [templates]
    vm_storage: local-lvm
    template_storage: local
    bridge: vmbr0
"""

RETURN = r"""
proxmox_version:
  description: The answer of C(GET /version).
  returned: when the API answered
  type: dict
  sample: {version: 9.1.1, release: '9.1', repoid: 42ab0c1d}
node:
  description: The node checked.
  returned: always
  type: str
  sample: pve
checks:
  description: Every check with its status; privilege checks carry the step.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Check id.
      type: str
      sample: token_privileges
    status:
      description: One of C(pass), C(fail), C(warn), C(skip).
      type: str
    detail:
      description: What was found.
      type: str
    step:
      description: The step of a C(token_privileges) check.
      type: str
      returned: for token_privileges
missing_privileges:
  description: Privileges the token lacks, per step and ACL path.
  returned: always
  type: list
  elements: dict
  sample: [{step: templates, path: /nodes/pve, privilege: Sys.AccessNetwork}]
remediation:
  description:
    - The pveum commands that grant the missing privileges (lines starting with C(#) are notes),
      or the one-line remediation of another failed check.
  returned: always
  type: list
  elements: str
failed_check:
  description: The id of the first failed check.
  returned: failed
  type: str
proxmox_env:
  description: The non-secret values in use (never C(PROXMOX_TOKEN_SECRET)), for latest.env.
  returned: when the values were valid
  type: dict
  sample: {PROXMOX_API_URL: 'https://127.0.0.1:8006', PROXMOX_NODE: pve, PROXMOX_TOKEN_ID: pipeline@pve!full}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.eminfra.pipeline.plugins.module_utils import _proxmox, _proxmox_env
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._privileges import STEP_ORDER
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import StateLayout, find_project_root, state_dir_argument_spec
from ansible_collections.eminfra.pipeline.plugins.module_utils._token_check import (
    TokenCheck, check_pci_mappings, load_intent_context,
)

STEPS = list(STEP_ORDER)


def argument_spec() -> dict:
    return {
        'env_file': {'type': 'path'},
        # state_dir excludes api_url: EMINFRA_STATE_DIR is read when state_dir is used, never passed for it
        **state_dir_argument_spec(fallback=False),
        'api_url': {'type': 'str'},
        'node': {'type': 'str'},
        'token_id': {'type': 'str'},
        'token_secret': {'type': 'str', 'no_log': True},
        'validate_certs': {'type': 'bool', 'default': True},
        'ca_bundle': {'type': 'path'},
        'steps': {'type': 'list', 'elements': 'str', 'choices': STEPS, 'default': list(STEPS)},
        'cluster_file': {'type': 'path'},
        'nodes_file': {'type': 'path'},
        'vm_storage': {'type': 'str'},
        'template_storage': {'type': 'str'},
        'bridge': {'type': 'str'},
        'pci_mappings': {'type': 'list', 'elements': 'str'},
        'containers': {'type': 'bool'},
        'timeout': {'type': 'float', 'default': 10},
        'retries': {'type': 'int', 'default': 3},
    }


def env_from_options(params: dict) -> dict[str, str]:
    values = {
        'PROXMOX_API_URL': params['api_url'],
        'PROXMOX_NODE': params['node'],
        'PROXMOX_TOKEN_ID': params['token_id'],
        'PROXMOX_TOKEN_SECRET': params['token_secret'],
        'PROXMOX_TLS_VERIFY': 'true' if params['validate_certs'] else 'false',
    }
    if params['ca_bundle']:
        values['PROXMOX_CA_BUNDLE'] = params['ca_bundle']
    return values


def intent_context(params: dict) -> dict:
    keys = ('vm_storage', 'template_storage', 'bridge')
    if all(params[key] for key in keys):
        context = {key: params[key] for key in keys}
        context['pci_mappings'] = list(params['pci_mappings'] or [])
        context['containers'] = bool(params['containers'])
        context['source'] = 'module options'
        return context
    root = find_project_root()
    context = load_intent_context(params['cluster_file'] or f'{root}/inventory/dev/cluster.yaml',
                                  params['nodes_file'] or f'{root}/inventory/dev/nodes.yaml')
    for key in keys:
        if params[key]:
            context[key] = params[key]
    if params['pci_mappings'] is not None:
        context['pci_mappings'] = list(params['pci_mappings'])
    if params['containers'] is not None:
        context['containers'] = params['containers']
    return context


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[('env_file', 'api_url'), ('state_dir', 'api_url')],
        required_by={'api_url': ('node', 'token_id', 'token_secret')},
        supports_check_mode=True,
    )
    params = module.params
    result: dict = {'changed': False, 'checks': [], 'missing_privileges': [], 'remediation': [],
                    'node': params['node'] or ''}

    def fail(err: CheckError, **extra) -> None:
        result.update(extra)
        result.setdefault('failed_check', err.check)
        if not result['remediation'] and err.remediation:
            result['remediation'] = [err.remediation]
        module.fail_json(msg=str(err), **result)

    settings = None
    context: dict = {}
    try:
        if params['api_url']:
            env = env_from_options(params)
            module.no_log_values.update(_proxmox_env.no_log_values(env))
            settings = _proxmox_env.validate_values(env, source='module options')
        else:
            path = params['env_file'] or StateLayout.resolve(params['state_dir']).proxmox_env
            settings = _proxmox_env.load(path)
            module.no_log_values.update(settings.no_log_values())
        result['node'] = settings.node
        result['proxmox_env'] = settings.public()
        result['checks'].append({'id': 'proxmox_env_valid', 'status': 'pass',
                                 'detail': 'keys, token id and URL are valid'})
        context = intent_context(params)
        check_pci_mappings(context['pci_mappings'], context['source'])
    except CheckError as err:
        result['checks'].append({'id': err.check, 'status': 'fail', 'detail': err.detail})
        fail(err)

    if not _proxmox.HAS_PROXMOXER:
        module.fail_json(msg=missing_required_lib('proxmoxer'), exception=_proxmox.PROXMOXER_IMPORT_ERROR)

    check = TokenCheck(settings, context, params['steps'], timeout=params['timeout'], retries=params['retries'])
    check.run()
    result['checks'].extend(check.checks)
    result['missing_privileges'] = check.missing
    result['remediation'] = check.remediation
    if check.version:
        result['proxmox_version'] = check.version
    for warning in check.warnings:
        module.warn(warning)
    failure = check.failure
    if failure is not None:
        fail(failure)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
