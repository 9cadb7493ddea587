# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where ``make setup`` puts the local Terraform provider mirror and its CLI config, and the pin.

tests/setup/install-provider.sh builds the bpg/proxmox provider at ``PROVIDER_PIN`` (read from
tests/setup/terraform-provider.env, the one place the pin is written) into
``provider_mirror_path()`` and writes ``cli_config_path()``, which the Makefile exports as
``TF_CLI_CONFIG_FILE``. The gate and the tests take the same paths from here.
"""

from __future__ import annotations

import os
import platform
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIN_FILE = os.path.join(ROOT, 'tests', 'setup', 'terraform-provider.env')


def _read_pin(path: str = PIN_FILE) -> dict[str, str]:
    values = {}
    with open(path, encoding='utf-8') as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith('#'):
                key, dummy, value = line.partition('=')
                values[key.strip()] = value.strip().strip('\'"')
    return {'source': values['PROVIDER_SOURCE'], 'version': values['PROVIDER_VERSION'],
            'go_module': values['PROVIDER_GO_MODULE'], 'go_sum': values['PROVIDER_GO_SUM']}


#: ``source`` (the provider's full source address), ``version``, ``go_module``, ``go_sum``.
PROVIDER_PIN = _read_pin()


def cli_config_path(root: str = ROOT) -> str:
    """The CLI config ``make setup`` writes: the mirror for the pinned provider, or empty."""
    return os.path.join(root, '.cache', 'terraform', 'terraformrc')


def provider_mirror_path(root: str = ROOT) -> str:
    """The filesystem mirror (unpacked layout) that ``make setup`` fills."""
    return os.path.join(root, '.cache', 'terraform', 'providers')


def terraform_platform() -> str:
    """This machine's platform directory name, as Terraform spells it (``linux_amd64``)."""
    machine = platform.machine().lower()
    arch = {'x86_64': 'amd64', 'aarch64': 'arm64', 'i386': '386', 'i686': '386'}.get(machine, machine)
    return f'{platform.system().lower()}_{"arm" if arch.startswith("armv") else arch}'


def pinned_provider_binary(root: str = ROOT) -> str:
    """Where the mirror holds the pinned provider's executable for this platform."""
    name = PROVIDER_PIN['source'].rsplit('/', 1)[1]
    version = PROVIDER_PIN['version']
    return os.path.join(provider_mirror_path(root), *PROVIDER_PIN['source'].split('/'), version,
                        terraform_platform(), f'terraform-provider-{name}_v{version}')


def mirror_ready(root: str = ROOT) -> bool:
    """The mirror holds the pinned provider and the CLI config installs it from there."""
    try:
        with open(cli_config_path(root), encoding='utf-8') as handle:
            config = handle.read()
    except OSError:
        return False
    return 'filesystem_mirror' in config and os.access(pinned_provider_binary(root), os.X_OK)


def effective_cli_config(environ: dict[str, str] | None = None, root: str = ROOT) -> str | None:
    """The CLI config a Terraform run should use: ``TF_CLI_CONFIG_FILE`` when it names an existing
    file, else the one ``make setup`` wrote when it exists, else None."""
    named = (os.environ if environ is None else environ).get('TF_CLI_CONFIG_FILE')
    if named and os.path.isfile(named):
        return named
    own = cli_config_path(root)
    return own if os.path.isfile(own) else None


# Terraform's own wording when init cannot reach a provider registry. "Failed to query available
# provider packages" alone is not enough: a mirror that lacks the provider says that too.
_UNREACHABLE = re.compile(r'could not connect to|no such host|dial tcp|i/o timeout|connection refused|'
                          r'network is unreachable', re.IGNORECASE)


def registry_unreachable(init_output: str) -> bool:
    """True when ``terraform init`` failed because it could not reach the provider registry."""
    return bool(_UNREACHABLE.search(init_output))


# ---------------------------------------------------------------- version constraints
def _version(text: str) -> tuple[int, ...]:
    match = re.fullmatch(r'v?(\d+(?:\.\d+)*)', text.strip())
    if not match:
        raise ValueError(f'not a version: {text!r}')
    return tuple(int(part) for part in match.group(1).split('.'))


def version_satisfies(version: str, constraint: str) -> bool:
    """Whether ``version`` meets a Terraform version constraint (``~> 0.111``, ``>= 1.6, < 2.0``).

    ``~> X.Y`` allows only the rightmost given part to grow: ``~> 0.111`` is ``>= 0.111, < 1.0``
    and ``~> 1.2.3`` is ``>= 1.2.3, < 1.3.0``. Pre-release versions are not handled.
    """
    have = _version(version)
    for clause in constraint.split(','):
        match = re.fullmatch(r'\s*(~>|>=|<=|!=|>|<|=)?\s*(\S+)\s*', clause)
        if not match:
            raise ValueError(f'not a version constraint: {constraint!r}')
        operator, given = match.group(1) or '=', match.group(2)
        want = _version(given)
        width = max(len(have), len(want), 3)
        mine, theirs = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if operator == '~>':
            bump = max(len(want) - 2, 0)
            upper = want[:bump] + (want[bump] + 1,)
            upper += (0,) * (width - len(upper))
            ok = theirs <= mine < upper
        else:
            ok = {'=': mine == theirs, '!=': mine != theirs, '>': mine > theirs, '>=': mine >= theirs,
                  '<': mine < theirs, '<=': mine <= theirs}[operator]
        if not ok:
            return False
    return True
