# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The O(state_dir) option; its argument spec is C(_state.state_dir_argument_spec())."""

    DOCUMENTATION = r'''
options:
  state_dir:
    description:
      - The pipeline's state root; every contract path (C(proxmox.env), C(cache/templates/manifest.json),
        C(cache/terraform/), C(runs/latest.env)) lies under it.
      - When not set, the E(EMINFRA_STATE_DIR) environment variable is used, and without it
        C(state/) under the project root (the nearest directory upwards from the working directory
        that holds this collection's C(galaxy.yml)).
      - A relative path is taken relative to the project root.
      - Playbooks pass the C(eminfra_state_dir) variable here.
    type: path
'''
