# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Terraform runner of the terraform_apply step.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

What it guarantees, beyond what cloud.terraform and community.general.terraform do:

- ``changed`` comes from Terraform's exit codes (``plan -detailed-exitcode``: 0 no changes,
  2 changes) and the counts from ``terraform show -json PLAN`` (``resource_changes``,
  ``resource_drift``), never from text.
- The saved plan is what gets applied; check mode is that plan and nothing else.
- The Proxmox token reaches Terraform only through the environment of ``plan`` and ``apply``
  (``PROXMOX_VE_API_TOKEN``); it is in no argv, no variable, no file this code writes, and it
  is scrubbed from logs and messages should anything ever echo it.
- Variables go through ``TF_VAR_*``; ``TF_CLI_ARGS*``, ``TF_VAR_*``, ``TF_LOG*`` and
  ``PROXMOX_VE_*`` inherited from the caller are dropped, so nothing outside the task can add
  arguments, variables or debug logging (the provider's debug log prints request headers).
- The provider is found the way the operator's Terraform finds it: the CLI configuration named
  by an inherited ``TF_CLI_CONFIG_FILE`` (when that file exists), else the project's own
  ``.cache/terraform/terraformrc`` that ``make setup`` writes beside the provider mirror it
  builds, else none (plain ``terraform init`` from the registry).
- The repository's ``terraform/`` stays clean: the configuration is copied into the workdir
  (``<workdir>/<environment>/config``), and the data dir (``TF_DATA_DIR``), the local state
  (``backend "local"`` with its path given at init), plans, logs and the CLI config all live
  in the workdir. The copy also keeps ``.terraform.lock.hcl`` out of the repository.
- ``outputs.json`` is normalised to the contract, validated (``terraform_outputs_valid``),
  stripped of sensitive outputs, refused if it holds the token secret, and written atomically.

The runner takes ``run_command(argv, env, cwd, timeout) -> (rc, stdout, stderr)`` so tests
can pass a fake and assert the exact argv and environment.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from ansible_collections.eminfra.pipeline.plugins.module_utils import _atomic
from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform_backend as tf_backend
from ansible_collections.eminfra.pipeline.plugins.module_utils import _intent
from ansible_collections.eminfra.pipeline.plugins.module_utils import _outputs
from ansible_collections.eminfra.pipeline.plugins.module_utils import _manifest
from ansible_collections.eminfra.pipeline.plugins.module_utils import _tempfiles
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._proxmox_env import ProxmoxSettings

SECRET_MASK = '********'
LOGS_KEPT = 20

#: Inherited variables that could change what Terraform does or prints; never passed on.
_DROPPED_ENV_PREFIXES = ('TF_VAR_', 'TF_CLI_ARGS', 'TF_LOG', 'PROXMOX_VE_')
_DROPPED_ENV_KEYS = ('TF_DATA_DIR', 'TF_CLI_CONFIG_FILE', 'TF_WORKSPACE', 'TF_STATE', 'SSL_CERT_FILE',
                     'SSL_CERT_DIR')
#: Files of the configuration copied into the workdir.
_CONFIG_SUFFIXES = ('.tf', '.tf.json', '.tftpl')
#: The CLI configuration ``make setup`` writes (tests/setup/install-provider.sh), relative to the
#: project root: the filesystem mirror that holds bpg/proxmox where no registry is reachable.
PROJECT_CLI_CONFIG = os.path.join('.cache', 'terraform', 'terraformrc')
#: The VMs of the root module, and the description every VM it creates starts with.
VM_RESOURCE_TYPE = 'proxmox_virtual_environment_vm'
VM_ADDRESS = f'{VM_RESOURCE_TYPE}.vm'
MANAGED_DESCRIPTION = 'Managed by eminfra.pipeline'
_VARIABLE_NAME_CHARS = frozenset('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-')


class TerraformError(CheckError):
    """A failed Terraform command or a refused precondition, with the run log's path."""

    def __init__(self, check: str, detail: str, where: str | None = None,
                 remediation: str | None = None, log_path: str | None = None) -> None:
        self.log_path = log_path
        if log_path:
            detail = f'{detail} (full log: {log_path})'
        super().__init__(check, detail, where=where, remediation=remediation)

    def result(self) -> dict:
        out = super().result()
        if self.log_path:
            out['log_path'] = self.log_path
        return out


# ------------------------------------------------------------------ Proxmox settings
def provider_env(settings: ProxmoxSettings) -> dict[str, str]:
    """The environment of plan and apply, as the bpg/proxmox provider reads it.

    The endpoint is the API's base URL as ``_proxmox_env`` parsed it (no port means 8006, never the
    https default 443). The certificate is verified unless proxmox.env says ``PROXMOX_TLS_VERIFY=false``
    (only then ``PROXMOX_VE_INSECURE``); a private CA reaches Go's certificate pool as ``SSL_CERT_FILE``,
    which replaces the system bundle for Terraform and its provider only."""
    env = {
        'PROXMOX_VE_ENDPOINT': f'{settings.api_url}/',
        'PROXMOX_VE_API_TOKEN': f'{settings.token_id}={settings.token_secret}',
    }
    if not settings.tls_verify:
        env['PROXMOX_VE_INSECURE'] = 'true'
    elif settings.ca_bundle:
        env['SSL_CERT_FILE'] = settings.ca_bundle
    return env


def resolve_cli_config(base_env: dict, project_root: str, fallback: str) -> str:
    """The Terraform CLI configuration of a run: an inherited TF_CLI_CONFIG_FILE that exists, else
    the project's (make setup's provider mirror), else ``fallback`` (an empty file the runner writes)."""
    inherited = base_env.get('TF_CLI_CONFIG_FILE')
    if inherited and os.path.isfile(inherited):
        return os.path.abspath(inherited)
    project = os.path.join(project_root, PROJECT_CLI_CONFIG)
    if os.path.isfile(project):
        return project
    return fallback


# ------------------------------------------------------------------ the validated intent Terraform reads
INTENT_DIR = 'intent'


def write_validated_intent(cluster_file: str, nodes_file: str, workdir: str) -> dict[str, str]:
    """Validate both intent files (``intent_valid``) and write what was validated as JSON under
    ``<workdir>/intent/``; return the paths as the Terraform variables ``intent_cluster_file`` and
    ``intent_nodes_file``.

    Terraform then reads exactly the values the pipeline validated: JSON has one reading (and is
    YAML 1.2, so the module's ``yamldecode`` takes it unchanged), where the YAML files could be
    read one way by PyYAML (YAML 1.1) and another by Terraform (YAML 1.2)."""
    validated = _intent.validated_intent_files(os.path.abspath(cluster_file), os.path.abspath(nodes_file))
    directory = os.path.join(workdir, INTENT_DIR)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    paths = {}
    for key, name in (('cluster', 'intent_cluster_file'), ('nodes', 'intent_nodes_file')):
        path = os.path.join(directory, f'{key}.json')
        _atomic.write_if_changed(path, json.dumps({key: validated[key][key]}, indent=2, sort_keys=True) + '\n',
                                 mode=0o600)
        paths[name] = path
    return paths


#: Terraform resource types that are VMs (or containers): their delete is never implicit.
VM_RESOURCE_TYPES = ('proxmox_virtual_environment_vm', 'proxmox_virtual_environment_container')
ALLOW_REPLACE_REMEDIATION = ('if the VMs are meant to go, run again with -e eminfra_allow_replace=true '
                             '(role variable terraform_apply_allow_replace, module option allow_replace); otherwise '
                             'correct the intent (inventory/dev/nodes.yaml) so that it names the VMs as they are')


def _resource_type(address: str) -> str:
    """``module.x.proxmox_virtual_environment_vm.vm["a"]`` -> ``proxmox_virtual_environment_vm``."""
    parts = address.split('[', 1)[0].split('.')
    while parts[:1] == ['module'] and len(parts) > 2:
        parts = parts[2:]
    if parts[:1] == ['data']:
        return ''
    return parts[0] if len(parts) >= 2 else ''


def destroyed_vms(plan: dict) -> list[dict]:
    """The VMs a plan (``terraform show -json``) deletes or replaces: address, name, vmid, replace, new vmid."""
    found = []
    for change in plan.get('resource_changes') or []:
        actions = (change.get('change') or {}).get('actions') or []
        kind = change.get('type') or _resource_type(change.get('address') or '')
        if kind not in VM_RESOURCE_TYPES or 'delete' not in actions:
            continue
        before = (change.get('change') or {}).get('before') or {}
        after = (change.get('change') or {}).get('after') or {}
        found.append({
            'address': change.get('address'),
            'name': before.get('name') or change.get('index'),
            'vmid': before.get('vm_id') if before.get('vm_id') is not None else before.get('vmid'),
            'replace': 'create' in actions,
            'new_vmid': after.get('vm_id') if 'create' in actions else None,
            'reason': change.get('action_reason'),
        })
    return found


def refuse_destroyed_vms(found: list[dict], plan_path: str, log_path: str | None = None) -> None:
    """The ``plan_destroys_vm`` check: raise when the plan deletes or replaces any VM."""
    if not found:
        return
    parts = []
    for vm in found:
        what = f'{vm["name"]} (vmid {vm["vmid"]})'
        if vm['replace']:
            new = f' as vmid {vm["new_vmid"]}' if vm['new_vmid'] not in (None, vm['vmid']) else ''
            parts.append(f'replace {what}: destroy it and create it again{new}')
        else:
            parts.append(f'destroy {what}')
    error = TerraformError('plan_destroys_vm', f'the plan would {"; ".join(parts)}; nothing was applied',
                           where=plan_path, remediation=ALLOW_REPLACE_REMEDIATION, log_path=log_path)
    error.destroyed_vms = found
    raise error


def state_vm_instances(tfstate: dict) -> dict:
    """The VMs of a Terraform state: node name -> {'vmid', 'status', 'address'} (status 'tainted' after a
    failed create)."""
    out = {}
    for resource in tfstate.get('resources') or []:
        if resource.get('mode') != 'managed' or resource.get('type') != VM_RESOURCE_TYPE:
            continue
        for instance in resource.get('instances') or []:
            key = instance.get('index_key')
            if isinstance(key, str):
                out[key] = {'vmid': _outputs.as_int((instance.get('attributes') or {}).get('vm_id')),
                            'status': instance.get('status') or 'ok', 'address': f'{VM_ADDRESS}["{key}"]'}
    return out


def intent_vms(intent_nodes_file: str | None) -> dict:
    """The VMs the intent names: node name -> vmid, for the enabled VM nodes (not containers) with an integer vmid."""
    if not intent_nodes_file:
        return {}
    try:
        nodes = _intent.enabled_nodes(intent_nodes_file)
    except Exception:  # noqa: BLE001 - the templates and intent checks report a broken intent
        return {}
    return {node['name']: node['vmid'] for node in nodes
            if isinstance(node.get('name'), str) and node.get('guest', 'vm') == 'vm'
            and isinstance(node.get('vmid'), int) and not isinstance(node.get('vmid'), bool)}


# ------------------------------------------------------------------ plan summary and outputs
def summarise_plan(plan: dict) -> dict:
    """Counts and drift from ``terraform show -json PLAN`` (structured, never text)."""
    counts = {'add': 0, 'change': 0, 'destroy': 0}
    replaced = []
    for change in plan.get('resource_changes') or []:
        actions = change.get('change', {}).get('actions') or []
        if 'create' in actions:
            counts['add'] += 1
        if 'delete' in actions:
            counts['destroy'] += 1
        if 'update' in actions:
            counts['change'] += 1
        if 'create' in actions and 'delete' in actions:
            replaced.append(change.get('address'))
    drift = [{'address': d.get('address'), 'actions': d.get('change', {}).get('actions') or []}
             for d in plan.get('resource_drift') or []]
    output_changes = sorted(name for name, change in (plan.get('output_changes') or {}).items()
                            if (change.get('actions') or ['no-op']) != ['no-op'])
    return {'counts': counts, 'replaced': replaced, 'drift': drift, 'output_changes': output_changes}


# ------------------------------------------------------------------ the runner
def default_run_command(argv: list[str], env: dict[str, str], cwd: str, timeout: float | None):
    """subprocess, with a graceful stop at the timeout: SIGINT (Terraform saves its state), then kill."""
    with subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, errors='replace') as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            return 124, out, f'{err}\nterraform_apply_wrapper: stopped after the {timeout:.0f}s timeout\n'
        return proc.returncode, out, err


def find_binary(binary_path: str | None) -> str:
    """``binary_path``, else terraform, then tofu, on PATH or beside this Python."""
    if binary_path:
        found = shutil.which(binary_path)
        if not found:
            raise CheckError('terraform_binary', f'{binary_path} is not an executable', where='binary_path',
                             remediation='point binary_path at terraform or tofu, or run make setup')
        return found
    search = os.pathsep.join([os.environ.get('PATH', ''), os.path.dirname(sys.executable)])
    for name in ('terraform', 'tofu'):
        found = shutil.which(name, path=search)
        if found:
            return found
    raise CheckError('terraform_binary', 'neither terraform nor tofu is on PATH', where='PATH',
                     remediation='run make setup (installs an embedded terraform command) or install Terraform')


class TerraformRunner:
    """One run of the terraform_apply step for one environment."""

    #: Where the state is (``use_backend``): the local default, or the pg backend's settings.
    backend_type = 'local'
    pg: tf_backend.PgBackend | None = None
    migrate_state = False
    migrated: dict | None = None
    last_stderr = ''
    #: Apply a plan that deletes or replaces a VM (``plan_destroys_vm`` otherwise); state=absent is its own say-so.
    allow_replace = False
    #: The saved plan as ``terraform show -json`` printed it, once read.
    shown_plan = None
    #: Terraform's TMPDIR for this run (``_tempfiles``), made by ``prepare`` and removed by ``cleanup``.
    tmp_dir = None
    #: What killed runs before this one left behind and ``prepare`` removed.
    swept: list = []

    def __init__(self, run_command, binary: str, project_path: str, workdir: str, manifest: str,
                 outputs_path: str | None = None, variables: dict | None = None,
                 proxmox: ProxmoxSettings | None = None,
                 lock_timeout: str = '0s', parallelism: int = 10, timeout: float = 3600.0,
                 base_env: dict | None = None, clock=time.time) -> None:
        self.run_command = run_command
        self.binary = binary
        self.project_path = os.path.abspath(project_path).rstrip(os.sep)
        self.env_name = os.path.basename(self.project_path)
        self.terraform_root = os.path.dirname(os.path.dirname(self.project_path))
        self.workdir = os.path.abspath(workdir)
        self.manifest = os.path.abspath(manifest)
        self.outputs_path = os.path.abspath(outputs_path or os.path.join(self.workdir, 'outputs.json'))
        self.variables = dict(variables or {})
        self.proxmox = proxmox
        self.lock_timeout = lock_timeout
        self.parallelism = parallelism
        self.deadline = clock() + timeout
        self.clock = clock
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.env_dir = os.path.join(self.workdir, self.env_name)
        self.config_root = os.path.join(self.env_dir, 'config')
        self.chdir = os.path.join(self.config_root, 'environments', self.env_name)
        self.data_dir = os.path.join(self.env_dir, 'data')
        self.state_path = os.path.join(self.env_dir, 'terraform.tfstate')
        self.plan_path = os.path.join(self.env_dir, 'plans', 'last.tfplan')
        self.empty_cli_config = os.path.join(self.workdir, 'terraformrc')
        self.cli_config = resolve_cli_config(self.base_env, os.path.dirname(self.terraform_root),
                                             self.empty_cli_config)
        self.log_path = os.path.join(self.env_dir, 'logs', f'{time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))}'
                                     f'-{os.getpid()}.log')
        self.commands: list[list[str]] = []
        self._log_lock = threading.Lock()

    # -------------------------------------------------------------- helpers
    @property
    def secret(self) -> str | None:
        return self.proxmox.token_secret if self.proxmox else None

    def scrub(self, text: str) -> str:
        secret = self.secret
        text = text.replace(secret, SECRET_MASK) if secret and text else text
        return self.scrub_backend(text)

    def _log(self, text: str) -> None:
        with self._log_lock:
            self._write_log(text)

    def _write_log(self, text: str) -> None:
        os.makedirs(os.path.dirname(self.log_path), mode=0o700, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, 'a', encoding='utf-8') as handle:
            handle.write(self.scrub(text))

    def env(self, with_provider: bool) -> dict[str, str]:
        """The full environment of one Terraform command."""
        env = {key: value for key, value in self.base_env.items()
               if not key.startswith(_DROPPED_ENV_PREFIXES) and key not in _DROPPED_ENV_KEYS}
        env.update({
            'TF_IN_AUTOMATION': '1',
            'TF_INPUT': '0',
            'CHECKPOINT_DISABLE': '1',
            'TF_DATA_DIR': self.data_dir,
            'TF_CLI_CONFIG_FILE': self.cli_config,
        })
        for name, value in self.tf_variables().items():
            env[f'TF_VAR_{name}'] = value
        if self.tmp_dir:
            env['TMPDIR'] = self.tmp_dir
        if with_provider and self.proxmox:
            env.update(provider_env(self.proxmox))
        return self.backend_env(env)

    def tf_variables(self) -> dict[str, str]:
        variables = {}
        if self.proxmox:
            variables['proxmox_node'] = self.proxmox.node
        for name, value in self.variables.items():
            variables[name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        variables['manifest_file'] = self.manifest
        return variables

    def run(self, args: list[str], with_provider: bool = False, capture: bool = False) -> tuple[int, str]:
        argv = [self.binary, f'-chdir={self.chdir}'] + args
        self.commands.append(argv)
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            raise TerraformError('terraform_apply', f'the timeout ran out before "{args[0]}"', log_path=self.log_path,
                                 remediation='raise the timeout option')
        self._log(f'$ {" ".join(argv)}\n')
        rc, out, err = self.run_command(argv, self.env(with_provider), self.chdir, remaining)
        self.last_stderr = err or ''
        if capture:
            self._log(f'(stdout: {len(out or "")} bytes of JSON)\n{err or ""}[exit {rc}]\n\n')
        else:
            self._log(f'{out or ""}{err or ""}[exit {rc}]\n\n')
        return rc, out or ''

    def fail(self, what: str, rc: int) -> TerraformError:
        backend_failure = self.backend_failure()
        if backend_failure:
            return backend_failure
        return TerraformError('terraform_apply', f'terraform {what} failed with exit code {rc}',
                              where=self.chdir, log_path=self.log_path,
                              remediation='read the log, fix the cause, then rerun: ansible-playbook playbooks/site.yml '
                                          '-e eminfra_start_at=terraform_apply')

    # -------------------------------------------------------------- steps
    def check_inputs(self) -> None:
        if not os.path.isdir(self.project_path):
            raise CheckError('terraform_apply', 'no such Terraform environment', where=self.project_path,
                             remediation='set project_path to a directory under terraform/environments/')
        for name, value in self.variables.items():
            if not name or not set(name) <= _VARIABLE_NAME_CHARS or name[0].isdigit():
                raise CheckError('terraform_apply', f'invalid variable name {name!r}', where='variables',
                                 remediation='use Terraform variable names (letters, digits, _ and -)')
            if self.secret and self.secret in json.dumps(value):
                raise CheckError('terraform_apply', f'variable {name} holds the Proxmox token secret', where='variables',
                                 remediation='the token reaches Terraform only through state/proxmox.env')

    def prepare(self) -> None:
        """Workdir layout, the configuration copy and (when no CLI config was found) an empty one."""
        for directory in (self.workdir, self.env_dir, os.path.dirname(self.plan_path), self.data_dir):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        if self.cli_config == self.empty_cli_config:
            _atomic.write_if_changed(self.cli_config, '', mode=0o600)
        self._copy_config()
        self.write_backend_override(self.backend_type)
        self.make_tmp_dir()

    def make_tmp_dir(self) -> None:
        """This run's TMPDIR for Terraform and its provider, after removing those of killed runs."""
        if self.tmp_dir is None:
            self.swept = _tempfiles.sweep(_tempfiles.TERRAFORM_PREFIX)
            self.tmp_dir = _tempfiles.make_run_dir(_tempfiles.TERRAFORM_PREFIX)
            # however the module ends (exit_json and fail_json exit the process)
            atexit.register(self.cleanup)
            if self.swept:
                self._log(f'# removed what killed runs left behind: {", ".join(self.swept)}\n')

    def cleanup(self) -> None:
        """Remove this run's TMPDIR (a killed run's is removed by the next run's ``prepare``)."""
        if self.tmp_dir:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self.tmp_dir = None

    def _config_files(self) -> list[tuple[str, str]]:
        """(relative path, absolute source) of the module, its submodules and this environment."""
        files = []
        for directory, dirnames, filenames in os.walk(self.terraform_root):
            rel_dir = os.path.relpath(directory, self.terraform_root)
            parts = [] if rel_dir == '.' else rel_dir.split(os.sep)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith('.') and d != 'tests'
                                 and not (parts == ['environments'] and d != self.env_name))
            for filename in sorted(filenames):
                if filename.endswith(_CONFIG_SUFFIXES) and not filename.startswith('.'):
                    files.append((os.path.join(*parts, filename) if parts else filename,
                                  os.path.join(directory, filename)))
        return files

    def _copy_config(self) -> None:
        wanted = set()
        for rel, source in self._config_files():
            wanted.add(rel)
            with open(source, 'rb') as handle:
                data = handle.read()
            destination = os.path.join(self.config_root, rel)
            os.makedirs(os.path.dirname(destination), mode=0o700, exist_ok=True)
            _atomic.write_if_changed(destination, data, mode=0o600)
        for directory, dirnames, filenames in os.walk(self.config_root):
            dirnames[:] = [d for d in dirnames if not d.startswith('.')]
            for filename in filenames:
                rel = os.path.relpath(os.path.join(directory, filename), self.config_root)
                if rel not in wanted and filename.endswith(_CONFIG_SUFFIXES) and rel != self.backend_override_rel:
                    os.unlink(os.path.join(directory, filename))

    def init_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for rel, source in self._config_files():
            if rel.endswith(('.tf', '.tf.json')):
                digest.update(rel.encode() + b'\0')
                with open(source, 'rb') as handle:
                    digest.update(handle.read())
        digest.update(f'\0{self.binary}\0{self.state_path}\0{self.cli_config}\0'.encode())
        digest.update(_atomic.read_bytes(self.cli_config) or b'')
        digest.update(self.backend_fingerprint().encode())
        return digest.hexdigest()

    def init(self) -> bool:
        """terraform init when the configuration, binary or state path changed; returns whether it ran."""
        stamp = os.path.join(self.env_dir, 'init.sha256')
        fingerprint = self.init_fingerprint()
        current = _atomic.read_bytes(stamp)
        migration = self.backend_migration()
        if migration:
            self.forget_init(stamp)
            self.migrate(*migration)
            _atomic.atomic_write(stamp, fingerprint, mode=0o600)
            return True
        if current == fingerprint.encode() and os.path.isdir(self.data_dir) and os.listdir(self.data_dir):
            return False
        self.forget_init(stamp)
        rc, dummy = self.run(self.init_argv(self.backend_type) + ['-reconfigure'])
        if rc != 0:
            raise self.fail('init', rc)
        _atomic.atomic_write(stamp, fingerprint, mode=0o600)
        return True

    def plan(self, destroy: bool) -> bool:
        """terraform plan -detailed-exitcode -out; True when it plans changes (exit code 2)."""
        args = ['plan', '-input=false', '-no-color', '-detailed-exitcode', f'-lock-timeout={self.lock_timeout}',
                f'-parallelism={self.parallelism}', f'-out={self.plan_path}']
        if destroy:
            args.append('-destroy')
        rc, dummy = self.run(args, with_provider=True)
        if rc not in (0, 2):
            raise self.fail('plan', rc)
        return rc == 2

    def read_plan(self) -> dict:
        """The saved plan as ``terraform show -json`` prints it, read once per run (the destroy guard and
        the counts both use it)."""
        if self.shown_plan is None:
            rc_show, out = self.run(['show', '-json', '-no-color', self.plan_path], capture=True)
            if rc_show != 0:
                raise self.fail('show -json (of the saved plan)', rc_show)
            try:
                self.shown_plan = json.loads(out)
            except ValueError:
                raise TerraformError('terraform_apply', 'terraform show -json did not print JSON', log_path=self.log_path,
                                     remediation='check the Terraform version (>= 1.6, < 2.0)') from None
        return self.shown_plan

    def show_plan(self) -> dict:
        """Counts and drift of the saved plan, from terraform show -json."""
        return summarise_plan(self.read_plan())

    def guard_destroyed_vms(self) -> None:
        """Before anything is applied (and in check mode): refuse a plan that deletes or replaces a VM."""
        refuse_destroyed_vms(destroyed_vms(self.read_plan()), self.plan_path, self.log_path)

    def apply(self) -> None:
        rc, dummy = self.run(['apply', '-input=false', '-no-color', f'-lock-timeout={self.lock_timeout}',
                              f'-parallelism={self.parallelism}', self.plan_path], with_provider=True)
        if rc != 0:
            raise self.fail('apply', rc)

    def outputs(self) -> dict:
        rc, out = self.run(['output', '-json', '-no-color'], capture=True)
        if rc != 0:
            raise self.fail('output -json', rc)
        try:
            raw = json.loads(out or '{}')
        except ValueError:
            raise TerraformError('terraform_outputs_valid', 'terraform output -json did not print JSON',
                                 log_path=self.log_path, remediation='check the Terraform version') from None
        return _outputs.normalise(raw)

    def write_outputs(self, outputs: dict) -> bool:
        return _outputs.write(self.outputs_path, outputs, self.secret)

    def prune_logs(self) -> None:
        directory = os.path.dirname(self.log_path)
        logs = sorted(name for name in os.listdir(directory) if name.endswith('.log'))
        for name in logs[:-LOGS_KEPT]:
            os.unlink(os.path.join(directory, name))

    # -------------------------------------------------------------- recovery after a crash
    def _state_ok(self, raw: bytes | None) -> bool:
        try:
            return isinstance(json.loads(raw or b''), dict)
        except ValueError:
            return False

    @property
    def pre_apply_path(self) -> str:
        """The state as it was before the last apply that has not succeeded: present while an apply runs,
        and after one that failed or was killed. Empty when there was no state yet."""
        return self.state_path + '.pre-apply'

    def restore_state(self) -> dict:
        """A state file that is empty or not JSON (a crash while Terraform wrote it) is replaced by the
        last good copy: the snapshot taken before the apply that crashed (no state at all when there was
        none yet), else Terraform's own backup. The damaged file is kept beside it."""
        raw = _atomic.read_bytes(self.state_path)
        if raw is None or self._state_ok(raw):
            return {}
        reason = 'empty' if not raw.strip() else f'not JSON ({len(raw)} bytes)'
        damaged = f'{self.state_path}.damaged'
        snapshot = _atomic.read_bytes(self.pre_apply_path)
        restored = None
        if snapshot is not None and not snapshot.strip():
            _atomic.atomic_write(damaged, raw, mode=0o600)
            os.unlink(self.state_path)
            restored = {'from': self.pre_apply_path, 'reason': reason, 'damaged_copy': damaged,
                        'detail': 'there was no state before the apply that crashed'}
        else:
            for candidate in (self.pre_apply_path, self.state_path + '.backup'):
                good = _atomic.read_bytes(candidate)
                if good and self._state_ok(good):
                    _atomic.atomic_write(damaged, raw, mode=0o600)
                    _atomic.atomic_write(self.state_path, good, mode=0o600)
                    restored = {'from': candidate, 'reason': reason, 'damaged_copy': damaged}
                    break
        if restored is None:
            raise TerraformError('terraform_state_valid', f'the Terraform state is {reason} and there is no good copy '
                                 '(.pre-apply snapshot or .backup) to restore it from', where=self.state_path,
                                 log_path=self.log_path,
                                 remediation=f'restore {self.state_path} from a backup, or remove it and rerun: the run '
                                 'adopts (terraform import) the VMs of the intent that exist on the node')
        self._log(f'# terraform_state_valid: the state was {reason}; restored from {restored["from"]} '
                  f'(the damaged file is kept as {damaged})\n')
        return restored

    def snapshot_state(self) -> None:
        """Keep the last good state (empty: none yet) before an apply rewrites it."""
        raw = _atomic.read_bytes(self.state_path)
        _atomic.atomic_write(self.pre_apply_path, raw if raw and self._state_ok(raw) else b'', mode=0o600)

    def apply_ended(self) -> None:
        """The apply succeeded: the state is whole and matches the node, the snapshot is no longer needed."""
        try:
            os.unlink(self.pre_apply_path)
        except FileNotFoundError:
            pass

    def state_vms(self) -> dict:
        """The VMs of the local state (``state_vm_instances``); none when there is no good state."""
        raw = _atomic.read_bytes(self.state_path)
        if not raw or not self._state_ok(raw):
            return {}
        return state_vm_instances(json.loads(raw))

    def proxmox_vms(self) -> dict:
        """The node's VMs as the Proxmox API lists them: vmid -> {'name', 'description'}."""
        proxmox = self.proxmox
        client = proxmox.client()
        out = {}
        for vm in client.get(f'nodes/{proxmox.node}/qemu') or []:
            vmid = _outputs.as_int(vm.get('vmid'))
            if vmid is None:
                continue
            config = client.get(f'nodes/{proxmox.node}/qemu/{vmid}/config') or {}
            out[vmid] = {'name': config.get('name') or vm.get('name') or '', 'description': config.get('description') or ''}
        return out

    def recover(self, intent_nodes_file: str | None) -> dict:
        """Converge Terraform's state with the node after a crash or a failed create, deliberately.

        * a VM the intent names, missing from the state, that exists on the node with the intent's name
          and the pipeline's description (``Managed by eminfra.pipeline``) was created by a run whose
          state was lost (an apply that failed or was killed, its ``.pre-apply`` snapshot still there; a
          create whose task-status read failed; a state file removed): it is adopted (``terraform
          import``) and reported, never created twice;
        * a VM on the node with the vmid of such a node that is not the pipeline's (another name or
          description) is refused with the check ``terraform_vm_adopt``, on a first run too: it is neither
          adopted nor touched (the provider would otherwise take over any VM whose vmid it was told to
          create, since it reads Proxmox's "already exists" as a create already done);
        * a tainted VM (its create failed after Proxmox made it) that exists on the node is untainted
          (``terraform untaint``): the plan then updates it in place instead of destroying it.
        """
        intent = intent_vms(intent_nodes_file)
        state = self.state_vms()
        missing = {name: vmid for name, vmid in intent.items() if name not in state}
        tainted = [name for name, entry in state.items() if entry['status'] == 'tainted']
        out = {'adopted': [], 'untainted': []}
        if not (missing or tainted) or not self.proxmox:
            return out
        node_vms = self.proxmox_vms()
        for name, vmid in sorted(missing.items()):
            found = node_vms.get(vmid)
            if found is None:
                continue
            if found['name'] != name or not found['description'].startswith(MANAGED_DESCRIPTION):
                raise TerraformError('terraform_vm_adopt', f'VM {vmid} exists on node {self.proxmox.node} but is not in '
                                     f'the Terraform state, and it is not the pipeline\'s {name} (name '
                                     f'{found["name"]!r}, description {found["description"][:60]!r}); it was neither '
                                     'adopted nor changed', where=f'/nodes/{self.proxmox.node}/qemu/{vmid}',
                                     log_path=self.log_path,
                                     remediation=f'give node {name} another vmid in the intent, or remove VM {vmid} '
                                     'if nothing needs it, then rerun -e eminfra_start_at=terraform_apply')
            address = f'{VM_ADDRESS}["{name}"]'
            rc, dummy = self.run(['import', '-input=false', '-no-color', f'-lock-timeout={self.lock_timeout}',
                                  address, f'{self.proxmox.node}/{vmid}'], with_provider=True)
            if rc != 0:
                raise TerraformError('terraform_vm_adopt', f'terraform import of VM {vmid} as {address} failed with '
                                     f'exit code {rc}', where=self.chdir, log_path=self.log_path,
                                     remediation='read the log, fix the cause, then rerun -e eminfra_start_at=terraform_apply')
            out['adopted'].append({'name': name, 'vmid': vmid, 'address': address})
        for name in sorted(tainted):
            entry = state[name]
            if entry['vmid'] not in node_vms:
                continue  # really not there: the plan creates it again
            rc, dummy = self.run(['untaint', '-no-color', f'-lock-timeout={self.lock_timeout}', entry['address']])
            if rc != 0:
                raise self.fail(f'untaint {entry["address"]}', rc)
            out['untainted'].append({'name': name, 'vmid': entry['vmid'], 'address': entry['address']})
        if out['adopted'] or out['untainted']:
            self._log(f'# recovered: adopted {out["adopted"]}, untainted {out["untainted"]}\n')
        return out

    # -------------------------------------------------------------- re-validation on resume
    def validate_outputs(self) -> dict:
        """Before a resume skips the step: outputs.json is valid and matches the Terraform state."""
        remediation = 'ansible-playbook playbooks/site.yml -e eminfra_start_at=terraform_apply'
        recorded = _outputs.read(self.outputs_path, remediation=remediation)
        if self.backend_type == 'local' and not os.path.isfile(self.state_path):
            raise CheckError('terraform_outputs_valid', 'there is no Terraform state to compare with',
                             where=self.state_path, remediation=remediation)
        self.check_migration_mode(check_mode=False)
        self.prepare()
        self._log(f'# terraform_apply_wrapper: environment {self.env_name}, validate outputs.json\n')
        initialised = self.init()
        current = self.outputs()
        _outputs.compare(recorded, current, self.outputs_path, remediation=remediation)
        self.prune_logs()
        return {'changed': False, 'outputs_valid': True, 'outputs': current, 'initialised': initialised,
                'log_path': self.log_path, 'state_path': self.state_path, 'workdir': self.workdir,
                'outputs_path': self.outputs_path, 'binary': self.binary, 'cli_config': self.cli_config,
                'backend': self.backend_result()}

    # -------------------------------------------------------------- the whole step
    def execute(self, state: str = 'present', check_mode: bool = False, intent_nodes_file: str | None = None) -> dict:
        """Plan (and unless check mode, apply the saved plan, then write outputs.json)."""
        self.check_inputs()
        self.check_migration_mode(check_mode)
        if state == 'present':
            _manifest.templates_present(self.manifest, intent_nodes_file, placed=True)
        self.prepare()
        self._log(f'# terraform_apply_wrapper: environment {self.env_name}, state {state}, '
                  f'check_mode {check_mode}\n')
        # The crash recovery reads and repairs the local state file; the pg backend writes its state in one
        # database transaction, so a crash cannot tear it.
        local = self.backend_type == 'local'
        restored = self.restore_state() if local and not check_mode else {}
        initialised = self.init()
        recovered = self.recover(intent_nodes_file) if local and state == 'present' and not check_mode else {}
        planned = self.plan(destroy=state == 'absent')
        if planned and state == 'present' and not self.allow_replace:
            self.guard_destroyed_vms()
        result = {
            'changed': planned,
            'cli_config': self.cli_config,
            'initialised': initialised,
            'applied': False,
            'log_path': self.log_path,
            'plan_path': self.plan_path,
            'state_path': self.state_path,
            'workdir': self.workdir,
            'outputs_path': self.outputs_path,
            'binary': self.binary,
            'backend': self.backend_result(),
            'migrated': self.migrated,
            'state_restored': restored,
            'recovered': recovered,
        }
        if self.migrated:
            result['changed'] = True
        if check_mode or not planned:
            summary = self.show_plan()
        else:
            # Whether to apply follows from the plan's exit code alone; reading the saved plan
            # for the counts (no state lock needed) overlaps with applying it.
            if local:
                self.snapshot_state()
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                shown = pool.submit(self.show_plan)
                try:
                    self.apply()
                except CheckError:
                    shown.exception()  # wait for it; the apply failure is the one to report
                    raise
                self.apply_ended()
                summary = shown.result()
            result['applied'] = True
        result.update({'counts': summary['counts'], 'drift': summary['drift'], 'replaced': summary['replaced'],
                       'output_changes': summary['output_changes']})
        if check_mode:
            self.prune_logs()
            return result
        outputs = self.outputs()
        outputs_changed = self.write_outputs(outputs)
        result['outputs'] = outputs
        result['outputs_changed'] = outputs_changed
        result['changed'] = planned or outputs_changed or bool(self.migrated)
        self.prune_logs()
        return result

    # -------------------------------------------------------------- the state backend (local or pg)
    def use_backend(self, backend_type: str, pg: tf_backend.PgBackend | None = None, migrate_state: bool = False) -> None:
        """Keep the state in ``backend_type`` (``local``, ``pg``); ``pg`` holds the connection settings
        (needed for pg, and for a migration from pg). ``migrate_state`` copies the state over when the
        workdir was last initialised with the other backend (``terraform init -migrate-state``)."""
        if backend_type not in tf_backend.BACKEND_TYPES:
            raise CheckError('terraform_backend', f'unknown backend {backend_type!r}', where='backend',
                             remediation=f'use one of {", ".join(tf_backend.BACKEND_TYPES)}')
        if backend_type == 'pg' and pg is None:
            raise CheckError('terraform_backend_env_present', 'the pg backend needs its connection settings',
                             where='backend', remediation=f'write state/{tf_backend.BACKEND_ENV_NAME}')
        self.backend_type = backend_type
        self.pg = pg
        self.migrate_state = migrate_state

    @property
    def backend_override_rel(self) -> str:
        return os.path.join('environments', self.env_name, tf_backend.BACKEND_OVERRIDE)

    def scrub_backend(self, text: str) -> str:
        if self.pg and text:
            for secret in self.pg.secrets:
                text = text.replace(secret, SECRET_MASK)
        return text

    def backend_env(self, env: dict[str, str]) -> dict[str, str]:
        """Inherited libpq/pg variables are dropped; the pg backend's own are added when it is in use."""
        env = {key: value for key, value in env.items() if not key.startswith('PG')}
        if self.pg:
            env.update(self.pg.env())
        return env

    def init_argv(self, backend_type: str) -> list[str]:
        if backend_type == 'pg':
            return ['init', '-input=false', '-no-color'] + self.pg.init_args()
        return ['init', '-input=false', '-no-color', f'-backend-config=path={self.state_path}']

    def backend_fingerprint(self) -> str:
        # Empty for the local default, so that the init stamp of a local workdir stays what it was.
        if self.backend_type == 'pg':
            return f'\0pg\0{self.pg.schema_name}\0{self.pg.database}'
        return ''

    def write_backend_override(self, backend_type: str) -> None:
        """The generated override that selects the pg backend in the configuration copy (none for local)."""
        path = os.path.join(self.config_root, self.backend_override_rel)
        if backend_type == 'pg':
            _atomic.write_if_changed(path, tf_backend.PG_OVERRIDE_TEXT, mode=0o600)
        elif os.path.lexists(path):
            os.unlink(path)

    def backend_result(self) -> dict:
        if self.backend_type == 'pg':
            return self.pg.describe()
        return {'type': 'local', 'state_path': self.state_path}

    def backend_migration(self) -> tuple[str, str] | None:
        """(from, to) when the state must move; refuses a silent switch of backends (a new, empty state)."""
        recorded = tf_backend.recorded_backend(self.data_dir)
        wanted = self.backend_type
        source = recorded
        if recorded is None and wanted == 'pg' and os.path.isfile(self.state_path):
            source = 'local'
        if source is None or source == wanted:
            return None
        if source not in tf_backend.BACKEND_TYPES:
            raise CheckError('terraform_backend_changed', f'the workdir was initialised with the {source} backend, '
                             'which this pipeline does not manage', where=self.data_dir,
                             remediation='move the state to the local or pg backend by hand first')
        if not self.migrate_state:
            where = self.state_path if source == 'local' else (self.pg.source if self.pg else self.data_dir)
            raise CheckError('terraform_backend_changed', f'the Terraform state is in the {source} backend but this '
                             f'run asks for {wanted}; without a migration Terraform would start from an empty state '
                             'and create every VM again', where=where,
                             remediation=f'rerun with migrate_state=true (role variable terraform_apply_migrate_state) '
                             f'to copy the state from {source} to {wanted}, or keep backend={source}')
        if source == 'pg' and self.pg is None:
            raise CheckError('terraform_backend_env_present', 'migrating from pg needs the connection settings',
                             where=tf_backend.BACKEND_ENV_NAME,
                             remediation=f'keep state/{tf_backend.BACKEND_ENV_NAME} until the migration has run')
        return source, wanted

    def check_migration_mode(self, check_mode: bool) -> None:
        """Before anything is written: refuse a silent backend switch, and a migration in check mode."""
        if self.backend_migration() and check_mode:
            raise CheckError('terraform_backend_migration', 'a state migration does not run in check mode; nothing '
                             'was changed', where='migrate_state', remediation='run without check mode to migrate')

    def migrate(self, source: str, target: str) -> None:
        """terraform init -migrate-state from ``source`` to ``target``; the result reports it."""
        self._log(f'# terraform_apply_wrapper: migrate the state from {source} to {target}\n')
        if tf_backend.recorded_backend(self.data_dir) != source:
            # The data dir must know the source backend for Terraform to copy from it.
            self.write_backend_override(source)
            rc, dummy = self.run(self.init_argv(source) + ['-reconfigure'])
            if rc != 0:
                raise self.fail('init (of the backend to migrate from)', rc)
        self.write_backend_override(target)
        rc, dummy = self.run(self.init_argv(target) + ['-migrate-state', '-force-copy'])
        if rc != 0:
            raise self.fail('init -migrate-state', rc)
        if source == 'local' and os.path.isfile(self.state_path):
            # Kept for the record, under a name no later run reads as the current state.
            os.replace(self.state_path, f'{self.state_path}.migrated-to-{target}')
        self.migrated = {'from': source, 'to': target}

    @staticmethod
    def forget_init(stamp: str) -> None:
        """A failed init (say, the database was down) leaves a partial data dir: the next run must init again."""
        if os.path.lexists(stamp):
            os.unlink(stamp)

    def backend_failure(self) -> TerraformError | None:
        found = tf_backend.classify_failure(self.last_stderr, self.pg if self.backend_type == 'pg' or self.migrate_state
                                            else None)
        if not found:
            return None
        check, detail, remediation = found
        if check == 'terraform_state_locked':
            where = (f'PostgreSQL {self.pg.database} schema {self.pg.schema_name}' if self.backend_type == 'pg'
                     else self.state_path)
        else:
            where = self.pg.source if self.pg else self.chdir
        return TerraformError(check, self.scrub(detail), where=where, remediation=self.scrub(remediation),
                              log_path=self.log_path)
