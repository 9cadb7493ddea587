# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Both providers.tf files declare the same constraints, the baseline, and the provider version
that make setup builds into the local mirror satisfies them."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.tools import phase1, terraform_cli

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


def test_the_mirror_pin_satisfies_both_constraints():
    pin = terraform_cli.PROVIDER_PIN
    assert pin['source'].endswith('/' + BASELINE['providers']['proxmox']['source'])
    for name in phase1.PROVIDER_FILES:
        declared = phase1.provider_constraints(os.path.join(phase1.ROOT, name))['providers']['proxmox']
        assert terraform_cli.version_satisfies(pin['version'], declared['version']), (name, declared)


def test_a_pin_outside_the_constraint_is_reported():
    pin = dict(terraform_cli.PROVIDER_PIN, version='0.110.9')
    problems, dummy = phase1.pin_problems(pin=pin)
    assert problems == [f"{name}: the provider pin 0.110.9 (tests/setup/terraform-provider.env) does not satisfy "
                        "proxmox version '~> 0.111'" for name in phase1.PROVIDER_FILES]
    assert phase1.pin_problems(pin=dict(pin, version='1.0.0'))[0] != []
    assert phase1.pin_problems(pin=dict(pin, version='0.112.0'))[0] == []


def test_a_pin_of_another_provider_is_reported():
    other = terraform_cli.PROVIDER_PIN['source'].replace('/bpg/', '/someone-else/')
    problems, dummy = phase1.pin_problems(pin=dict(terraform_cli.PROVIDER_PIN, source=other))
    assert problems == [f'{name}: no required provider has the source of the provider pin {other} '
                        '(tests/setup/terraform-provider.env)' for name in phase1.PROVIDER_FILES]


def test_a_constraint_moved_away_from_the_pin_is_reported(tmp_path):
    root = _copy(tmp_path)
    for name in phase1.PROVIDER_FILES:
        path = root / name
        path.write_text(path.read_text().replace('"~> 0.111"', '"~> 0.112"'))
    problems, dummy = phase1.pin_problems(str(root))
    assert [p for p in problems if 'provider pin' in p] == [
        f"{name}: the provider pin {terraform_cli.PROVIDER_PIN['version']} (tests/setup/terraform-provider.env) "
        "does not satisfy proxmox version '~> 0.112'" for name in phase1.PROVIDER_FILES]


@pytest.mark.parametrize('version, constraint, expected', [
    ('0.111.0', '~> 0.111', True),
    ('0.112.0', '~> 0.111', True),
    ('0.110.9', '~> 0.111', False),
    ('1.0.0', '~> 0.111', False),
    ('1.2.7', '~> 1.2.3', True),
    ('1.2.2', '~> 1.2.3', False),
    ('1.3.0', '~> 1.2.3', False),
    ('1.9.2', '~> 1', True),
    ('2.0.0', '~> 1', False),
    ('1.11.4', '>= 1.6, < 2.0', True),
    ('1.5.7', '>= 1.6, < 2.0', False),
    ('1.2.3', '1.2.3', True),
    ('1.2.3', '= 1.2.0', False),
    ('1.2.3', '!= 1.2.3', False),
    ('1.2.3', '> 1.2, <= 1.2.3', True),
])
def test_version_constraints(version, constraint, expected):
    assert terraform_cli.version_satisfies(version, constraint) is expected


def test_a_malformed_constraint_is_an_error():
    with pytest.raises(ValueError):
        terraform_cli.version_satisfies('1.2.3', '~> 1.2-beta')
