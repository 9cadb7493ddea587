# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the terraform_apply tests: a project copy, its state root, and the module runner.

The module runs as Ansible runs it (its file with an args JSON, real Terraform) in a copy of the
repository's terraform/ so the checkout is never written to; a test asserts it stays clean.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
FIXTURES = os.path.join(REPO, 'terraform', 'tests', 'fixtures')
MODULE = os.path.join(REPO, 'plugins', 'modules', 'terraform_apply_wrapper.py')
COLLECTIONS = os.path.join(REPO, '.collections')


def terraform_binary() -> str | None:
    return shutil.which('terraform') or shutil.which('tofu')


@pytest.fixture(scope='session')
def terraform_bin():
    found = terraform_binary()
    if not found:
        pytest.skip('no terraform or tofu on PATH (make setup installs one)')
    return found


class Project:
    """A project root with galaxy.yml, terraform/, intent files and a state root."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.state = os.path.join(root, 'state')
        self.manifest = os.path.join(self.state, 'cache', 'templates', 'manifest.json')
        self.workdir = os.path.join(self.state, 'cache', 'terraform')
        self.outputs = os.path.join(self.workdir, 'outputs.json')
        self.proxmox_env = os.path.join(self.state, 'proxmox.env')
        self.cluster = os.path.join(root, 'inventory', 'dev', 'cluster.yaml')
        self.nodes = os.path.join(root, 'inventory', 'dev', 'nodes.yaml')

    def args(self, **kw) -> dict:
        args = {
            'intent_cluster_file': 'inventory/dev/cluster.yaml',
            'intent_nodes_file': 'inventory/dev/nodes.yaml',
            'variables': {'ssh_public_key': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnly test'},
        }
        args.update(kw)
        return args

    def run_module(self, check_mode: bool = False, env: dict | None = None, **kw) -> dict:
        """Run the module as Ansible does (args file, JSON on stdout), from the project root."""
        args = dict(self.args(**kw), _ansible_check_mode=check_mode)
        path = os.path.join(self.root, 'module-args.json')
        with open(path, 'w', encoding='utf-8') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
        run_env = dict(os.environ, PYTHONPATH=COLLECTIONS, EMINFRA_PROJECT_ROOT=self.root)
        run_env.pop('EMINFRA_STATE_DIR', None)
        run_env.update(env or {})
        proc = subprocess.run([sys.executable, MODULE, path], cwd=self.root, env=run_env, capture_output=True,
                              text=True, timeout=900, check=False)
        os.unlink(path)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f'module printed no JSON: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}') from None
        result['_stdout'] = proc.stdout + proc.stderr
        return result


@pytest.fixture()
def project(tmp_path):
    root = tmp_path / 'project'
    shutil.copytree(os.path.join(REPO, 'terraform'), root / 'terraform',
                    ignore=shutil.ignore_patterns('.terraform', '*.tfstate*', '.terraform.lock.hcl'))
    shutil.copy(os.path.join(REPO, 'galaxy.yml'), root / 'galaxy.yml')
    (root / 'inventory' / 'dev').mkdir(parents=True)
    shutil.copy(os.path.join(FIXTURES, 'cluster.yaml'), root / 'inventory' / 'dev' / 'cluster.yaml')
    shutil.copy(os.path.join(FIXTURES, 'nodes.yaml'), root / 'inventory' / 'dev' / 'nodes.yaml')
    (root / 'state' / 'cache' / 'templates').mkdir(parents=True)
    shutil.copy(os.path.join(FIXTURES, 'manifest.json'), root / 'state' / 'cache' / 'templates' / 'manifest.json')
    # Credentials for an API nobody answers (the provider makes no call until a resource is read);
    # the tests against the simulator replace them with the simulator's.
    env_file = root / 'state' / 'proxmox.env'
    env_file.write_text("PROXMOX_API_URL='https://127.0.0.1:9'\nPROXMOX_NODE='pve'\n"
                        "PROXMOX_TOKEN_ID='pipeline@pve!full'\nPROXMOX_TOKEN_SECRET='0f1e2d3c-unused-secret'\n"
                        "PROXMOX_TLS_VERIFY='false'\n")
    env_file.chmod(0o600)
    return Project(str(root))


def run_wrapper_playbook(project: Project, title: str, tasks: list[tuple[str, dict[str, str], bool]]) -> str:
    """ansible-playbook -vvvv over terraform_apply_wrapper tasks (name, extra options as YAML text,
    check mode) for the dev intent and the project's state directory; returns its output."""
    lines = ['---', f'- name: {title}', '  hosts: localhost', '  gather_facts: false', '  tasks:']
    for name, options, check_mode in tasks:
        lines += [f'    - name: {name}', '      eminfra.pipeline.terraform_apply_wrapper:',
                  '        intent_cluster_file: inventory/dev/cluster.yaml',
                  '        intent_nodes_file: inventory/dev/nodes.yaml', f'        state_dir: {project.state}']
        lines += [f'        {key}: {value}' for key, value in options.items()]
        if check_mode:
            lines.append('      check_mode: true')
    playbook = os.path.join(project.root, 'play.yml')
    with open(playbook, 'w', encoding='utf-8') as handle:
        handle.write('\n'.join(lines) + '\n')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, EMINFRA_PROJECT_ROOT=project.root,
               ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'), ANSIBLE_LOCALHOST_WARNING='false',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='false')
    env.pop('EMINFRA_STATE_DIR', None)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-vvvv', '-i',
                           'localhost,', '-c', 'local', '-e', f'ansible_python_interpreter={sys.executable}', playbook],
                          cwd=project.root, env=env, capture_output=True, text=True, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def files_under(directory: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, dummy, fs in os.walk(directory) for f in fs)


def tree_snapshot(directory: str) -> dict[str, bytes]:
    out = {}
    for path in files_under(directory):
        with open(path, 'rb') as handle:
            out[os.path.relpath(path, directory)] = handle.read()
    return out
