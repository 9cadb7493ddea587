# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Both providers.tf files declare the same constraints: the baseline."""

from __future__ import annotations

import os
import shutil

from tests.tools import phase1

BASELINE = {'required_version': '>= 1.6, < 2.0',
            'providers': {'proxmox': {'source': 'bpg/proxmox', 'version': '~> 0.111'}}}


def test_both_provider_files_declare_the_baseline():
    problems, found = phase1.pin_problems()
    assert problems == []
    assert found == {name: BASELINE for name in phase1.PROVIDER_FILES}


def _copy(tmp_path):
    for name in phase1.PROVIDER_FILES:
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(phase1.ROOT, name), target)
    return tmp_path


def test_drift_in_the_provider_version_is_reported(tmp_path):
    root = _copy(tmp_path)
    env_file = root / phase1.PROVIDER_FILES[1]
    env_file.write_text(env_file.read_text().replace('"~> 0.111"', '"0.66.1"'))
    problems, dummy = phase1.pin_problems(str(root))
    assert problems[0].startswith("terraform/environments/k3s-dev/providers.tf: providers is "
                                  "{'proxmox': {'source': 'bpg/proxmox', 'version': '0.66.1'}}, the baseline is")
    assert problems[-1].startswith('terraform/providers.tf declares')


def test_drift_in_the_terraform_version_is_reported(tmp_path):
    root = _copy(tmp_path)
    module_file = root / phase1.PROVIDER_FILES[0]
    module_file.write_text(module_file.read_text().replace('">= 1.6, < 2.0"', '">= 1.5"'))
    problems, dummy = phase1.pin_problems(str(root))
    assert "terraform/providers.tf: required_version is '>= 1.5', the baseline is '>= 1.6, < 2.0'" in problems


def test_missing_file_is_reported(tmp_path):
    root = _copy(tmp_path)
    os.remove(root / phase1.PROVIDER_FILES[1])
    problems, dummy = phase1.pin_problems(str(root))
    assert problems == ['terraform/environments/k3s-dev/providers.tf: missing']


def test_parser_reads_hcl_forms(tmp_path):
    path = tmp_path / 'versions.tf'
    path.write_text('''
# terraform { required_version = "commented out" }
terraform {
  /* block comment { */
  required_version = ">= 1.6, < 2.0" // trailing
  backend "local" {}
  required_providers {
    proxmox = { source = "bpg/proxmox", version = "~> 0.111" }
    http = {
      source  = "hashicorp/http"
      version = ">= 3.0"
    }
  }
}
provider "proxmox" {}
''')
    assert phase1.provider_constraints(str(path)) == {
        'required_version': '>= 1.6, < 2.0',
        'providers': {'proxmox': {'source': 'bpg/proxmox', 'version': '~> 0.111'},
                      'http': {'source': 'hashicorp/http', 'version': '>= 3.0'}},
    }
