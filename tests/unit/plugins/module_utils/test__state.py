# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import pickle

import pytest
from ansible.module_utils.basic import env_fallback
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.eminfra.pipeline.plugins.module_utils._state import (
    STEP,
    STEPS,
    StateLayout,
    find_project_root,
    resolve_state_dir,
    state_dir_argument_spec,
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / 'project'
    (root / 'playbooks' / 'deep').mkdir(parents=True)
    (root / 'galaxy.yml').write_text('namespace: eminfra\nname: pipeline\nversion: 0.1.0\n')
    monkeypatch.delenv('EMINFRA_STATE_DIR', raising=False)
    monkeypatch.delenv('EMINFRA_PROJECT_ROOT', raising=False)
    monkeypatch.chdir(root / 'playbooks' / 'deep')
    return root


def test_project_root_is_found_upwards(project):
    assert find_project_root() == str(project)


def test_other_collections_galaxy_yml_is_not_the_project(tmp_path, project):
    other = project / 'vendor' / 'other'
    other.mkdir(parents=True)
    (other / 'galaxy.yml').write_text('namespace: someone\nname: else\n')
    assert find_project_root(str(other)) == str(project)


def test_project_root_from_environment(project, monkeypatch, tmp_path):
    monkeypatch.setenv('EMINFRA_PROJECT_ROOT', str(tmp_path))
    assert find_project_root() == str(tmp_path)


def test_state_dir_order(project, monkeypatch, tmp_path):
    assert resolve_state_dir() == str(project / 'state')
    monkeypatch.setenv('EMINFRA_STATE_DIR', str(tmp_path / 'from-env'))
    assert resolve_state_dir() == str(tmp_path / 'from-env')
    assert resolve_state_dir(str(tmp_path / 'explicit')) == str(tmp_path / 'explicit')
    assert resolve_state_dir('relative/state') == str(project / 'relative' / 'state')
    monkeypatch.setenv('EMINFRA_STATE_DIR', 'env-relative')
    assert resolve_state_dir() == str(project / 'env-relative')


def test_layout_has_every_contract_path(project):
    layout = StateLayout.resolve()
    root = str(project / 'state')
    assert layout.as_dict() == {
        'state_dir': root,
        'proxmox_env': f'{root}/proxmox.env',
        'templates_dir': f'{root}/cache/templates',
        'manifest': f'{root}/cache/templates/manifest.json',
        'terraform_workdir': f'{root}/cache/terraform',
        'outputs_json': f'{root}/cache/terraform/outputs.json',
        'runs_dir': f'{root}/runs',
        'latest_env': f'{root}/runs/latest.env',
        'inventory_source': str(project / 'inventory' / 'proxmox_dynamic.yml'),
    }
    assert layout.run_dir('20260130T090000Z-a1b2c3') == f'{root}/runs/20260130T090000Z-a1b2c3'
    assert layout.lock == f'{root}/runs/run.lock'


def test_layout_from_explicit_root(tmp_path):
    layout = StateLayout(str(tmp_path / 's'), project_root=str(tmp_path))
    assert layout.latest_env == os.path.join(str(tmp_path), 's', 'runs', 'latest.env')
    assert layout.inventory_source == os.path.join(str(tmp_path), 'inventory', 'proxmox_dynamic.yml')


def test_steps_and_argument_spec():
    assert STEPS == ('proxmox_access', 'templates', 'terraform_apply', 'ansible_inventory', 'ansible_base',
                     'ansible_docker')
    spec = state_dir_argument_spec()
    assert spec['state_dir']['type'] == 'path'
    assert spec['state_dir']['fallback'] == (env_fallback, ['EMINFRA_STATE_DIR'])


def test_state_dir_falls_back_to_the_environment(monkeypatch, tmp_path):
    validator = ArgumentSpecValidator(state_dir_argument_spec())
    monkeypatch.setenv('EMINFRA_STATE_DIR', str(tmp_path / 'from-env'))
    assert validator.validate({}).validated_parameters['state_dir'] == str(tmp_path / 'from-env')
    explicit = validator.validate({'state_dir': str(tmp_path / 'explicit')})
    assert explicit.validated_parameters['state_dir'] == str(tmp_path / 'explicit')
    unset = ArgumentSpecValidator(state_dir_argument_spec(fallback=False))
    assert unset.validate({}).validated_parameters['state_dir'] is None
    monkeypatch.delenv('EMINFRA_STATE_DIR')
    assert validator.validate({}).validated_parameters['state_dir'] is None


def test_steps_table():
    assert [step.role for step in STEPS] == ['proxmox_access', 'templates', 'terraform_apply', 'node_inventory',
                                             'node_base', 'node_docker']
    revalidated = [str(step) for step in STEPS if step.revalidated]
    assert revalidated == ['proxmox_access', 'templates', 'terraform_apply', 'ansible_inventory']
    assert [str(step) for step in STEPS if step.token_checked] == ['templates', 'terraform_apply', 'ansible_inventory']
    assert STEP['terraform_apply'].revalidation_checks == ('terraform_outputs_valid', 'terraform_vms_present')
    assert STEP['terraform_apply'].dry_run_requires == ('templates_present',)
    assert STEP['templates'].result == 'templates_results' and STEP['proxmox_access'].result == 'proxmox_access_result'
    assert [step.hosts for step in STEPS if step.hosts] == ['base', 'docker']
    assert json.loads(json.dumps(list(STEPS))) == [str(step) for step in STEPS]
    assert pickle.loads(pickle.dumps(STEPS[0])) == 'proxmox_access'
