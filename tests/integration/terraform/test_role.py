# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The terraform_apply role through ansible-playbook: the step recorded in latest.env (by pipeline_run, from
the role's result),
completed with TERRAFORM_WORKDIR/TERRAFORM_OUTPUT_JSON, or failed with the check that failed."""

from __future__ import annotations

import os
import re
import shutil
import sys

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
from tests.ansible_run import run_playbook
from tests.pvesim.fixtures import pvesim, pvesim_fresh  # noqa: F401  pylint: disable=unused-import
from tests.integration.terraform.test_k3s_dev_lifecycle import sim_project  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.slow

PLAYBOOK = '''---
- name: The terraform_apply step on its own
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Start a run
      eminfra.pipeline.latest_env:
        start_run: true
    - name: Record the earlier steps
      eminfra.pipeline.latest_env:
        step: templates
    - name: Run the step, recorded from its result the way site.yml records it
      block:
        - name: Run the step
          ansible.builtin.include_role:
            name: eminfra.pipeline.terraform_apply
          vars:
            terraform_apply_state: "{{ wanted_state | default('present') }}"
        - name: Record the completed step
          eminfra.pipeline.pipeline_run:
            action: step
            step: terraform_apply
            result: "{{ terraform_apply_result }}"
      rescue:
        - name: Record the failed step
          eminfra.pipeline.pipeline_run:
            action: step
            step: terraform_apply
            event: failed
            result: "{{ ansible_failed_result }}"
          register: failure
        - name: Stop with the step's failure
          ansible.builtin.fail:
            msg: "{{ failure.msg }}"
'''


def play(project, tmp_path, *args):
    playbook = tmp_path / 'step.yml'
    playbook.write_text(PLAYBOOK)
    return run_playbook(str(playbook), '-i', 'localhost,', '-c', 'local', '-e', f'ansible_python_interpreter={sys.executable}',
                        *args, state_dir=project.state,
                        cwd=project.root, env={'EMINFRA_PROJECT_ROOT': project.root})


def test_role_records_the_completed_step(sim_project, terraform_bin, tmp_path):  # noqa: F811
    project = sim_project
    run = play(project, tmp_path)
    assert run.rc == 0, run.output
    latest = read_env_file(os.path.join(project.state, 'runs', 'latest.env'))
    assert latest['LAST_STEP_COMPLETED'] == 'terraform_apply'
    assert latest['TERRAFORM_WORKDIR'] == project.workdir
    assert latest['TERRAFORM_OUTPUT_JSON'] == project.outputs
    assert os.path.isfile(project.outputs)
    assert project.secret not in run.stdout + run.stderr
    gone = play(project, tmp_path, '-e', 'wanted_state=absent')
    assert gone.rc == 0, gone.output
    assert project.api.vmids() == []


def test_role_records_the_failed_check_and_keeps_the_last_completed_step(project, terraform_bin, tmp_path):
    os.unlink(project.manifest)
    run = play(project, tmp_path)
    assert run.rc != 0
    assert 'templates_present' in run.stdout
    latest = read_env_file(os.path.join(project.state, 'runs', 'latest.env'))
    assert latest['LAST_STEP_COMPLETED'] == 'templates'
    assert latest['LAST_STEP_FAILED'] == 'terraform_apply'
    assert latest['LAST_FAILED_CHECK'] == 'templates_present'
    assert latest['RUN_STATUS'] == 'failed'
    assert not os.path.exists(project.workdir)
    shutil.rmtree(os.path.join(project.state, 'runs'))


def test_terraform_error_keeps_the_last_completed_step_and_names_the_log(sim_project, terraform_bin,  # noqa: F811
                                                                         tmp_path):
    project = sim_project
    # A configuration Terraform refuses at plan time (a failing precondition).
    extra = os.path.join(project.root, 'terraform', 'environments', 'k3s-dev', 'zz_refused.tf')
    with open(extra, 'w', encoding='utf-8') as handle:
        handle.write('output "refused" {\n  value = 1\n  precondition {\n'
                     '    condition     = var.proxmox_node == "not-this-node"\n'
                     '    error_message = "stray precondition refused"\n  }\n}\n')
    run = play(project, tmp_path)
    assert run.rc != 0
    assert 'terraform plan failed with exit code 1' in run.stdout
    # The failure names the full Terraform log, which lives in the workdir and tells what went wrong.
    logs = re.findall(re.escape(project.workdir) + r'/[^\s\'",]+\.log', run.stdout)
    assert logs, run.output
    with open(logs[0], encoding='utf-8') as handle:
        assert 'stray precondition refused' in handle.read()
    latest = read_env_file(os.path.join(project.state, 'runs', 'latest.env'))
    assert latest['LAST_STEP_COMPLETED'] == 'templates'
    assert latest['LAST_STEP_FAILED'] == 'terraform_apply'
    assert latest['LAST_FAILED_CHECK'] == 'terraform_apply'
    assert latest['RUN_STATUS'] == 'failed'
    assert not os.path.exists(project.outputs)
    assert project.api.vmids() == []
    assert project.secret not in run.stdout + run.stderr
