# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The attributes of the collection's modules: what each attribute means, and the action group.

    A module sets each attribute's C(support) and C(details) (its own behaviour) in its own
    DOCUMENTATION; a module that only reads uses the C(read_only) variant, which sets them too.
    """

    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
  action_group:
    description: Use C(group/eminfra.pipeline.pipeline) in C(module_defaults) to set defaults for this module, e.g. its
      O(state_dir) once per play.
    support: full
    membership:
      - eminfra.pipeline.pipeline
'''

    # A module that only reads: check mode is the same run, there is nothing to diff, nothing ever changes.
    READ_ONLY = r'''
options: {}
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode runs the same checks.
  diff_mode:
    support: none
    details: Nothing changes, so there is nothing to diff.
  idempotent:
    support: full
    details: Never changes anything; C(changed) is always false.
'''
