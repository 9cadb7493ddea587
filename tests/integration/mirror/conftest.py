# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from tests.pvesim.mirror_fixtures import mirror  # noqa: F401  pylint: disable=unused-import


@pytest.fixture
def clean_mirror(mirror):  # noqa: F811  pylint: disable=redefined-outer-name
    """The session mirror with no faults and an empty request log."""
    mirror.reset()
    yield mirror
    mirror.reset()
