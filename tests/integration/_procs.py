# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""/proc for the suites that check which processes a run started or left behind."""

from __future__ import annotations

import os
from typing import Iterator


def proc_files(name: str) -> Iterator[tuple[int, bytes]]:
    """(pid, contents of /proc/PID/NAME) for every process that is still there to read."""
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/{name}', 'rb') as handle:
                data = handle.read()
        except OSError:
            continue
        yield int(entry), data
