# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Operator-facing errors of the pipeline.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

Every precondition of the pipeline is a named check. A failure is a CheckError that renders
as one line: the check id, where the problem is (file and field, or API path), what is wrong,
and one remediation.
"""

from __future__ import annotations


class CheckError(Exception):
    """A failed pipeline check, ready for ``fail_json(msg=str(err), **err.result())``."""

    def __init__(self, check: str, detail: str, where: str | None = None,
                 remediation: str | None = None) -> None:
        self.check = check
        self.detail = detail
        self.where = where
        self.remediation = remediation
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.check]
        if self.where:
            parts.append(self.where)
        parts.append(self.detail)
        text = ': '.join(parts)
        if self.remediation:
            text = f'{text}. Remediation: {self.remediation}'
        return text

    def result(self) -> dict:
        """Structured fields for a task result, next to ``msg``."""
        return {
            'failed_check': self.check,
            'remediation': self.remediation or '',
        }

    def __str__(self) -> str:
        return self.message
