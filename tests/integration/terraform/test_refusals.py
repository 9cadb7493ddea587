# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""terraform_apply refusals and failures with real Terraform; no Proxmox needed for these."""

from __future__ import annotations

import json
import os

from tests.integration.terraform.conftest import files_under


def test_missing_manifest_refused_with_templates_present_and_nothing_run(project, terraform_bin):
    os.unlink(project.manifest)
    result = project.run_module()
    assert result['failed'] is True
    assert result['failed_check'] == 'templates_present'
    assert result['msg'].startswith('templates_present: ')
    assert project.manifest in result['msg']
    assert result['remediation'] == 'ansible-playbook playbooks/site.yml -e eminfra_start_at=templates'
    assert not os.path.exists(project.workdir), 'nothing may run: no workdir, no log, no state'


def test_incomplete_manifest_refused_naming_the_field(project, terraform_bin):
    with open(project.manifest, encoding='utf-8') as handle:
        manifest = json.load(handle)
    del manifest['talos']
    with open(project.manifest, 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    result = project.run_module()
    assert result['failed_check'] == 'templates_present'
    assert 'talos: missing required key' in result['msg']
    assert not os.path.exists(project.workdir)


def test_manifest_that_is_not_json_refused(project, terraform_bin):
    with open(project.manifest, 'w', encoding='utf-8') as handle:
        handle.write('{"generated_at": ')
    result = project.run_module()
    assert result['failed_check'] == 'templates_present' and 'not JSON' in result['msg']


def test_intent_terraform_would_refuse_is_refused_before_it_runs(project, terraform_bin):
    # An address outside the network: intent_valid refuses it, so Terraform never plans it.
    with open(project.nodes, 'a', encoding='utf-8') as handle:
        handle.write('  - {name: stray, role: utility, os: ubuntu, vmid: 299, cores: 1, memory: 512, disk: 4,'
                     ' ipv4: 192.168.77.5, groups: [base]}\n')
    result = project.run_module(check_mode=True)
    assert result['failed'] is True and result['failed_check'] == 'intent_valid'
    assert 'inventory/dev/nodes.yaml: nodes[5] (stray).ipv4: 192.168.77.5 is outside cluster network' in result['msg']
    assert not os.path.exists(os.path.join(project.workdir, 'k3s-dev', 'plans')), 'nothing was planned'


def test_terraform_error_fails_clearly_with_the_log_path(project, terraform_bin):
    # A precondition of the configuration fails at plan: exit code 1.
    extra = os.path.join(project.root, 'terraform', 'environments', 'k3s-dev', 'zz_refused.tf')
    with open(extra, 'w', encoding='utf-8') as handle:
        handle.write('output "refused" {\n  value = 1\n  precondition {\n'
                     '    condition     = var.proxmox_node == "not-this-node"\n    error_message = "stray precondition refused"\n  }\n}\n')
    result = project.run_module(check_mode=True)
    assert result['failed'] is True
    assert result['failed_check'] == 'terraform_apply'
    assert 'terraform plan failed with exit code 1' in result['msg']
    log_path = result['log_path']
    assert log_path in result['msg'] and log_path.startswith(project.workdir)
    with open(log_path, encoding='utf-8') as handle:
        log = handle.read()
    assert 'stray precondition refused' in log
    assert result['remediation'].endswith('-e eminfra_start_at=terraform_apply')


def test_plan_without_credentials_is_refused_before_terraform_runs(project, terraform_bin):
    """The provider cannot plan without the API: no proxmox.env is its own check, in check mode too."""
    os.unlink(project.proxmox_env)
    result = project.run_module(check_mode=True)
    assert result['failed'] is True and result['failed_check'] == 'proxmox_env_present'
    assert project.proxmox_env in result['msg'] and 'Remediation:' in result['msg']
    assert not os.path.exists(project.workdir), 'nothing ran, nothing was written'
    assert not os.path.exists(project.outputs)
    # The project's terraform/ is untouched.
    assert not [p for p in files_under(os.path.join(project.root, 'terraform'))
                if '.terraform' in p or p.endswith(('.tfstate', '.tfplan', '.lock.hcl'))]
