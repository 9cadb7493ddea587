# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The simulated Proxmox VE API, one module per API area:

``base`` (request context, route record, shared parameter formats and helpers), ``guests``
(what QEMU guests and containers share), ``nodes``, ``cluster``, ``pools``, ``access``,
``storage``, ``tasks``, ``qemu``, ``agent``, ``lxc``, and ``routes`` (the dispatch table).
The server and the tests use the names exported here."""

from __future__ import annotations

from tests.pvesim.api.base import Ctx, Route
from tests.pvesim.api.routes import COMPILED, ROUTES, find_route

__all__ = ['COMPILED', 'ROUTES', 'Ctx', 'Route', 'find_route']
