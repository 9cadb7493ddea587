# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Session set-up shared by every test: Terraform finds the bpg/proxmox provider as `make test` has it.

`make` exports TF_CLI_CONFIG_FILE (the CLI configuration `make setup` writes beside the provider
mirror it builds); a test run started without make gets the same, so that Terraform run in a
copy of the project outside the checkout still finds the provider.
"""

from __future__ import annotations

import os

from tests.tools.terraform_cli import effective_cli_config


def pytest_configure(config):  # noqa: ARG001  pylint: disable=unused-argument
    found = effective_cli_config()
    if found:
        os.environ['TF_CLI_CONFIG_FILE'] = found
