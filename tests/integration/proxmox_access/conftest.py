# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the proxmox_access tests."""

from __future__ import annotations

import pytest

from tests.integration.proxmox_access.helpers import ConnectionRecorder
from tests.pvesim.fixtures import pvesim  # noqa: F401  pylint: disable=unused-import


@pytest.fixture()
def recorder():
    rec = ConnectionRecorder()
    yield rec
    rec.close()
