# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The state layout: every contract path derived from one state root.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

The root is, in order: an explicit ``state_dir`` (the ``eminfra_state_dir`` variable), the
``EMINFRA_STATE_DIR`` environment variable, or ``state/`` under the project root (the nearest
directory upwards from the working directory that holds this collection's ``galaxy.yml``).
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import env_fallback

STATE_DIR_ENV = 'EMINFRA_STATE_DIR'
PROJECT_ROOT_ENV = 'EMINFRA_PROJECT_ROOT'


class Step(str):
    """One pipeline step: its name (a plain string everywhere a step name is expected) and what the
    run's bookkeeping needs to know about it."""

    role: str
    revalidated: bool
    check: str
    revalidation_checks: tuple
    revalidation_check: str
    keys: tuple
    token_checked: bool
    hosts: str
    result: str
    dry_run_requires: tuple

    def __new__(cls, name: str, role: str, check: str, revalidation_checks: tuple = (), keys: tuple = (),
                token_checked: bool = False, hosts: str = '', result: str = '',
                dry_run_requires: tuple = ()) -> 'Step':
        step = super().__new__(cls, name)
        #: The role that does the step's work (and, in its tasks/revalidate.yml, re-validates it).
        step.role = role
        #: The variable the role leaves its result in (what the step records is taken from it).
        step.result = result or f'{role}_result'
        #: The checks a dry run needs to pass before the step's role runs (else it is not planned).
        step.dry_run_requires = tuple(dry_run_requires)
        step.check = check
        #: A resume re-validates the step's result with these checks before it skips the step; a step
        #: without them is re-run instead (it is idempotent, its re-validation is a re-run).
        step.revalidation_checks = tuple(revalidation_checks)
        step.revalidated = bool(revalidation_checks)
        step.revalidation_check = revalidation_checks[0] if revalidation_checks else ''
        #: The latest.env keys the completed step records (the contract's artefacts).
        step.keys = tuple(keys)
        #: Whether proxmox_token_check checks the token's privileges for this step.
        step.token_checked = token_checked
        #: The inventory group of the SSH-managed nodes the step configures ('' for a local step).
        step.hosts = hosts
        return step

    def __reduce__(self):
        return (str, (str(self),))


#: The pipeline's steps, in order (the values of LAST_STEP_COMPLETED): each with its role, its
#: default failing check (when the failure names none), the checks that re-validate it and the
#: latest.env keys it records.
STEPS = (
    Step('proxmox_access', role='proxmox_access', check='proxmox_access',
         revalidation_checks=('token_valid',), keys=('PROXMOX_API_URL', 'PROXMOX_NODE', 'PROXMOX_TOKEN_ID')),
    Step('templates', role='templates', check='templates_present', revalidation_checks=('templates_present',),
         keys=('TEMPLATE_UBUNTU_IMAGE', 'TEMPLATE_TALOS_IMAGE'), token_checked=True, result='templates_results'),
    Step('terraform_apply', role='terraform_apply', check='terraform_apply',
         revalidation_checks=('terraform_outputs_valid', 'terraform_vms_present'),
         keys=('TERRAFORM_WORKDIR', 'TERRAFORM_OUTPUT_JSON'), token_checked=True,
         dry_run_requires=('templates_present',)),
    Step('ansible_inventory', role='node_inventory', check='hosts_reachable',
         revalidation_checks=('hosts_reachable',), token_checked=True),
    Step('ansible_base', role='node_base', check='node_configured', hosts='base'),
    Step('ansible_docker', role='node_docker', check='node_configured', hosts='docker'),
)
#: Each step by its name.
STEP = {str(step): step for step in STEPS}


def find_project_root(start: str | None = None) -> str:
    """The nearest directory upwards from ``start`` that holds this collection's galaxy.yml."""
    if os.environ.get(PROJECT_ROOT_ENV):
        return os.path.abspath(os.environ[PROJECT_ROOT_ENV])
    current = os.path.abspath(start or os.getcwd())
    while True:
        galaxy = os.path.join(current, 'galaxy.yml')
        if os.path.isfile(galaxy):
            try:
                with open(galaxy, encoding='utf-8') as handle:
                    text = handle.read()
            except OSError:
                text = ''
            if 'namespace: eminfra' in text and 'name: pipeline' in text:
                return current
        parent = os.path.dirname(current)
        if parent == current:
            return os.path.abspath(start or os.getcwd())
        current = parent


def resolve_state_dir(state_dir: str | None = None, project_root: str | None = None) -> str:
    """The absolute state root (see the module docstring for the order)."""
    root = project_root or find_project_root()
    if state_dir:
        return os.path.abspath(os.path.join(root, os.path.expanduser(state_dir)))
    if os.environ.get(STATE_DIR_ENV):
        return os.path.abspath(os.path.join(root, os.path.expanduser(os.environ[STATE_DIR_ENV])))
    return os.path.join(root, 'state')


#: The Terraform root module, the only one (terraform/environments/k3s-dev, bpg/proxmox provider); its
#: workdir under the state root is cache/terraform/<name>/.
TERRAFORM_ENVIRONMENT = 'k3s-dev'
TERRAFORM_PROJECT_PATH = os.path.join('terraform', 'environments', TERRAFORM_ENVIRONMENT)

#: The inventory source the pipeline's Ansible steps use, relative to the project root.
INVENTORY_SOURCE = os.path.join('inventory', 'proxmox_dynamic.yml')


def state_dir_argument_spec(fallback: bool = True) -> dict:
    """The ``state_dir`` option, as documented by the ``eminfra.pipeline.state`` doc fragment: without
    it, the ``EMINFRA_STATE_DIR`` environment variable of the module's process.

    ``fallback=False`` is for a module whose ``state_dir`` excludes other options (proxmox_token_check's
    ``api_url``): the environment must not make the task pass both; ``resolve_state_dir`` reads the
    variable itself when ``state_dir`` is not set.
    """
    if not fallback:
        return {'state_dir': {'type': 'path'}}
    return {'state_dir': {'type': 'path', 'fallback': (env_fallback, [STATE_DIR_ENV])}}


class StateLayout:
    """The contract's paths under one state root."""

    def __init__(self, root: str, project_root: str | None = None) -> None:
        self.root = os.path.abspath(root)
        self.project_root = os.path.abspath(project_root) if project_root else find_project_root()

    @classmethod
    def resolve(cls, state_dir: str | None = None, project_root: str | None = None) -> 'StateLayout':
        root = project_root or find_project_root()
        return cls(resolve_state_dir(state_dir, root), project_root=root)

    def _join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def proxmox_env(self) -> str:
        return self._join('proxmox.env')

    @property
    def terraform_backend_env(self) -> str:
        """The pg backend's connection string (mode 0600), used only with the opt-in pg backend."""
        return self._join('terraform_backend.env')

    @property
    def templates_dir(self) -> str:
        return self._join('cache', 'templates')

    @property
    def manifest(self) -> str:
        return self._join('cache', 'templates', 'manifest.json')

    @property
    def terraform_workdir(self) -> str:
        return self._join('cache', 'terraform')

    @property
    def terraform_state(self) -> str:
        """The local Terraform state of the root module (terraform/environments/k3s-dev)."""
        return self._join('cache', 'terraform', TERRAFORM_ENVIRONMENT, 'terraform.tfstate')

    @property
    def terraform_data_dir(self) -> str:
        """Terraform's data dir of the root module (TF_DATA_DIR): which backend init last recorded."""
        return self._join('cache', 'terraform', TERRAFORM_ENVIRONMENT, 'data')

    @property
    def outputs_json(self) -> str:
        return self._join('cache', 'terraform', 'outputs.json')

    @property
    def runs_dir(self) -> str:
        return self._join('runs')

    @property
    def latest_env(self) -> str:
        return self._join('runs', 'latest.env')

    @property
    def lock(self) -> str:
        return self._join('runs', 'run.lock')

    @property
    def inventory_source(self) -> str:
        """``inventory/proxmox_dynamic.yml`` in the project (ANSIBLE_INVENTORY_PATH)."""
        return os.path.join(self.project_root, INVENTORY_SOURCE)

    def run_dir(self, run_id: str) -> str:
        return self._join('runs', run_id)

    def as_dict(self) -> dict[str, str]:
        """Every contract path, for task results and latest.env defaults."""
        return {
            'state_dir': self.root,
            'proxmox_env': self.proxmox_env,
            'templates_dir': self.templates_dir,
            'manifest': self.manifest,
            'terraform_workdir': self.terraform_workdir,
            'outputs_json': self.outputs_json,
            'runs_dir': self.runs_dir,
            'latest_env': self.latest_env,
            'inventory_source': self.inventory_source,
        }
