# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make setup's local provider mirror: tests/setup/install-provider.sh in a scratch checkout, with a
stand-in ``go`` (the real build takes minutes; test_terraform_code.py runs Terraform with the real
mirror), and the paths and the pin that tests/tools/terraform_cli.py reports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.integration.terraform.conftest import REPO
from tests.tools import phase1, terraform_cli

PIN = terraform_cli.PROVIDER_PIN

# Answers the three go commands the script runs and logs every call.
FAKE_GO = r'''#!/bin/sh
echo "$*" >> "$FAKE_GO_LOG"
case "$1" in
  env) echo go0.0-standin ;;
  mod) printf '{\n\t"Path": "%s",\n\t"Dir": "%s",\n\t"Sum": "%s"\n}\n' "${3%@*}" "$FAKE_GO_DIR" "$FAKE_GO_SUM" ;;
  build)
    [ "$(pwd)" = "$FAKE_GO_DIR" ] || { echo "built in $(pwd)" >&2; exit 1; }
    while [ "$1" != -o ]; do shift; done
    printf '#!/bin/sh\necho provider %s\n' "$CGO_ENABLED" > "$2"
    ;;
  *) exit 2 ;;
esac
'''


class Checkout:
    """A scratch checkout holding the script and the pin, with its own per-user cache."""

    def __init__(self, tmp_path):
        self.root = tmp_path / 'checkout'
        (self.root / 'tests' / 'setup').mkdir(parents=True)
        for name in ('install-provider.sh', 'terraform-provider.env'):
            shutil.copy2(os.path.join(REPO, 'tests', 'setup', name), self.root / 'tests' / 'setup' / name)
        self.user_cache = tmp_path / 'xdg-cache'
        self.go = tmp_path / 'bin' / 'go'
        self.go.parent.mkdir()
        self.go.write_text(FAKE_GO)
        self.go.chmod(0o755)
        self.module_dir = tmp_path / 'module'
        self.module_dir.mkdir()
        self.go_log = tmp_path / 'go.log'
        self.go_log.write_text('')
        self.env = {'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path / 'home'), 'XDG_CACHE_HOME': str(self.user_cache),
                    'EMINFRA_GO': str(self.go), 'FAKE_GO_LOG': str(self.go_log), 'FAKE_GO_DIR': str(self.module_dir),
                    'FAKE_GO_SUM': PIN['go_sum']}

    def run(self, **env) -> str:
        proc = subprocess.run(['bash', str(self.root / 'tests' / 'setup' / 'install-provider.sh')],
                              env=dict(self.env, **env), capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout == ''
        return proc.stderr

    @property
    def binary(self) -> str:
        return terraform_cli.pinned_provider_binary(str(self.root))

    def cli_config(self) -> str:
        with open(terraform_cli.cli_config_path(str(self.root)), encoding='utf-8') as handle:
            return handle.read()


@pytest.fixture(name='checkout')
def fixture_checkout(tmp_path):
    return Checkout(tmp_path)


def test_builds_once_then_reuses_the_mirror_then_the_per_user_copy(checkout):
    out = checkout.run()
    assert f'built from {PIN["go_module"]}@v{PIN["version"]}' in out, out
    calls = checkout.go_log.read_text().splitlines()
    assert calls[:2] == ['env GOVERSION', f'mod download -json {PIN["go_module"]}@v{PIN["version"]}']
    assert re.fullmatch(rf'build -trimpath -ldflags -s -w -X main\.version={re.escape(PIN["version"])} -o \S+ \.',
                        calls[2]) and len(calls) == 3, calls
    with open(checkout.binary, encoding='utf-8') as handle:
        assert handle.read() == '#!/bin/sh\necho provider 0\n'  # CGO_ENABLED=0, as the provider's releases
    assert os.access(checkout.binary, os.X_OK)
    mirror = terraform_cli.provider_mirror_path(str(checkout.root))
    assert checkout.binary.startswith(os.path.join(mirror, *PIN['source'].split('/'), PIN['version']) + os.sep)
    config = checkout.cli_config()
    assert f'path    = "{mirror}"' in config
    assert config.count(f'["{PIN["source"]}"]') == 2  # the mirror's include, direct's exclude
    assert terraform_cli.mirror_ready(str(checkout.root))
    user_copy = checkout.user_cache / 'eminfra' / 'terraform-providers' / os.path.relpath(checkout.binary, mirror)
    assert user_copy.is_file()
    assert sorted(os.listdir(checkout.root / '.cache' / 'terraform')) == ['provider.sha256', 'providers', 'terraformrc']

    # second run: nothing to do, go is not called
    calls = checkout.go_log.read_text()
    out = checkout.run()
    assert f'{PIN["version"]} ({terraform_cli.terraform_platform()}) already in .cache/terraform/providers' in out, out
    assert checkout.go_log.read_text() == calls

    # a fresh checkout (no .cache) on the same machine copies the per-user copy
    shutil.rmtree(checkout.root / '.cache')
    out = checkout.run()
    assert f'copied from {user_copy}' in out, out
    assert checkout.go_log.read_text() == calls
    assert terraform_cli.mirror_ready(str(checkout.root))

    # a damaged binary in the mirror is replaced, again from the per-user copy
    with open(checkout.binary, 'a', encoding='utf-8') as handle:
        handle.write('# damaged\n')
    assert 'copied from' in checkout.run()
    with open(checkout.binary, encoding='utf-8') as handle:
        assert 'damaged' not in handle.read()


def test_other_versions_leave_the_mirror(checkout):
    old = os.path.join(terraform_cli.provider_mirror_path(str(checkout.root)), *PIN['source'].split('/'), '0.1.0')
    os.makedirs(old)
    checkout.run()
    assert os.listdir(os.path.dirname(old)) == [PIN['version']]


def test_without_go_the_cli_config_is_empty(checkout, tmp_path):
    out = checkout.run(EMINFRA_GO=str(tmp_path / 'no-go'))
    assert 'no Go toolchain' in out and 'installs bpg/proxmox from the registry' in out, out
    assert checkout.cli_config() == ''
    assert not terraform_cli.mirror_ready(str(checkout.root))
    assert not os.path.exists(checkout.binary)


def test_a_module_with_another_checksum_is_not_built(checkout):
    out = checkout.run(FAKE_GO_SUM='h1:someone-else=')
    assert f'has the Go checksum h1:someone-else=, but tests/setup/terraform-provider.env pins {PIN["go_sum"]}' in out
    assert 'build' not in checkout.go_log.read_text()
    assert checkout.cli_config() == ''
    assert not os.path.exists(checkout.binary)
    assert not (checkout.user_cache / 'eminfra').exists()


def test_the_pin_is_written_once():
    """The pinned version appears in no code or build file but the pin file."""
    code = [name for name in phase1.repo_files(REPO)
            if name.endswith(('.py', '.sh', '.tf', '.yml', '.yaml', '.cfg', '.txt', '.env')) or name == 'Makefile']
    assert 'tests/setup/terraform-provider.env' in code
    holders = []
    for name in code:
        with open(os.path.join(REPO, name), encoding='utf-8', errors='replace') as handle:
            if re.search(r'(?<![\d.])' + re.escape(PIN['version']) + r'(?![\d.])', handle.read()):
                holders.append(name)
    assert holders == ['tests/setup/terraform-provider.env']


def test_registry_unreachable_is_told_from_a_mirror_without_the_provider():
    offline = ('Error: Failed to query available provider packages\n\nCould not retrieve the list of available '
               'versions for provider bpg/proxmox: could not connect to the registry: failed to request '
               'discovery document: dial tcp: lookup the registry: no such host\n')
    mirror_lacks_it = ('Error: Failed to query available provider packages\n\nCould not retrieve the list of '
                       'available versions for provider bpg/proxmox: provider bpg/proxmox was not found in any '
                       'of the search locations\n\n  - /somewhere/providers\n')
    assert terraform_cli.registry_unreachable(offline)
    assert not terraform_cli.registry_unreachable(mirror_lacks_it)
