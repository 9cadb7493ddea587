# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""No document gives Terraform a node's OS; the patterns catch the claims and spare negations."""

from __future__ import annotations

import pytest

from tests.tools import phase1

CLAIMS = [
    'Terraform configures the node OS.',
    'Terraform then configures the operating system of each VM.',
    'Terraform installs packages on the utility node.',
    'Terraform installs Docker.',
    'Terraform sets up users and SSH keys.',
    'Terraform manages the Talos machine config.',
    'The OS is configured by Terraform.',
    'Packages are installed via Terraform.',
    'Terraform passes cloud-init runcmd entries to install Docker.',
    'Terraform runs a remote-exec provisioner after boot.',
    'Terraform runs commands on the nodes.',
    'Terraform owns the node OS.',
    'After the VMs exist, Terraform `configures` the **guest OS**.',
    'Setup is simple:\nTerraform configures\nthe node OS when it boots.',
]

NOT_CLAIMS = [
    'Terraform never configures a node OS.',
    'Terraform does not install packages.',
    "Terraform doesn't manage the OS.",
    'Terraform owns VM lifecycle only.',
    'Terraform manages the VMs; Talos manages the OS.',
    'Talos owns the node OS, not Terraform.',
    'Ansible, not Terraform, installs packages.',
    'Remove/flag any wording that implies Terraform configures node OS.',
    'The gate fails on wording that says Terraform installs packages.',
    'Terraform creates the VMs, but it never installs software.',
    '```sh\n# Terraform configures the OS (a quoted example in a code block)\n```',
]


@pytest.mark.parametrize('text', CLAIMS)
def test_claims_are_found(text):
    claims, dummy = phase1.ownership_findings(text)
    assert claims, text


@pytest.mark.parametrize('text', NOT_CLAIMS)
def test_negations_and_meta_mentions_are_not_claims(text):
    claims, dummy = phase1.ownership_findings(text)
    assert claims == [], text


def test_claim_names_file_line_and_pattern(scratch_repo):
    scratch_repo('docs/x.md', '# X\n\nFirst line.\nThen Terraform installs packages on util-01.\n')
    problems, dummy = phase1.ownership_problems(str(scratch_repo.root))
    assert problems == ['docs/x.md:4: [terraform-installs-software] Then Terraform installs packages on util-01.']


def test_the_docs_contain_no_os_ownership_wording():
    files = phase1.markdown_files()
    assert {'docs/EM-Infra-Talos-Proxmox-Architecture.md', 'terraform/README.md',
            'terraform/environments/k3s-dev/README.md'} <= set(files)
    problems, dummy = phase1.ownership_problems()
    assert problems == []
