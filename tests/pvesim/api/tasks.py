# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tasks: index, status, log, list and stop."""

from __future__ import annotations

import re

from tests.pvesim.api.base import Ctx, _node, _perm
from tests.pvesim.state import ApiError, Task


def _task(ctx: Ctx) -> Task:
    upid = str(ctx.params['upid'])
    match = re.fullmatch(r'UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):'
                         r'([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):', upid)
    if not match:
        raise ApiError(500, f"unable to parse worker upid '{upid}'")
    task = ctx.sim.tasks.get(upid)
    if task is None:
        raise ApiError(500, 'no such task')
    if task.user != ctx.authid:
        _perm(ctx, f'/nodes/{task.node}', ['Sys.Audit'])
    return task


def get_task_index(ctx: Ctx) -> object:
    _task(ctx)
    return [{'name': 'log'}, {'name': 'status'}]


def get_task_status(ctx: Ctx) -> object:
    task = _task(ctx)
    with ctx.sim.lock:
        out = {'upid': task.upid, 'node': task.node, 'pid': task.pid, 'pstart': task.pstart,
               'starttime': task.starttime, 'type': task.type, 'id': task.id, 'user': task.user,
               'status': task.status}
        if task.status == 'stopped':
            out['exitstatus'] = task.exitstatus
    return out


def get_task_log(ctx: Ctx) -> object:
    task = _task(ctx)
    start = int(ctx.params.get('start') or 0)
    limit = int(ctx.params.get('limit') or 50)
    with ctx.sim.lock:
        lines = list(task.log)
    if not lines:
        lines = ['no content']
    return [{'n': index + 1, 't': text} for index, text in enumerate(lines)][start:start + limit]


def list_tasks(ctx: Ctx) -> object:
    sim = ctx.sim
    node = _node(ctx)
    params = ctx.params
    source = params.get('source', 'archive')
    statusfilter = set(str(params['statusfilter']).split(',')) if params.get('statusfilter') else None
    may_audit = ctx.checker.has(f'/nodes/{node}', ['Sys.Audit'])
    with sim.lock:
        tasks = sorted(sim.tasks.values(), key=lambda t: (t.starttime, t.pid), reverse=True)
        rows = []
        for task in tasks:
            if task.node != node or (task.user != ctx.authid and not may_audit):
                continue
            running = task.status == 'running'
            if (source == 'archive' and running) or (source == 'active' and not running):
                continue
            if params.get('userfilter') and str(params['userfilter']) not in task.user:
                continue
            if params.get('typefilter') and params['typefilter'] != task.type:
                continue
            if params.get('vmid') is not None and task.id != str(params['vmid']):
                continue
            if params.get('since') is not None and task.starttime < int(params['since']):
                continue
            if params.get('until') is not None and task.starttime > int(params['until']):
                continue
            kind = 'ok' if task.exitstatus == 'OK' else 'warning' if str(task.exitstatus).startswith('WARNINGS') else 'error'
            if params.get('errors') and (running or kind == 'ok'):
                continue
            if statusfilter and (running or kind not in statusfilter):
                continue
            row = {'upid': task.upid, 'node': task.node, 'pid': task.pid, 'pstart': task.pstart,
                   'starttime': task.starttime, 'type': task.type, 'id': task.id, 'user': task.user}
            if not running:
                row['status'] = task.exitstatus
                row['endtime'] = int(task.endtime or task.starttime)
            rows.append(row)
    start = int(params.get('start') or 0)
    limit = int(params['limit']) if params.get('limit') is not None else 50
    return rows[start:start + limit]


def delete_task(ctx: Ctx) -> object:
    upid = str(ctx.params['upid'])
    task = ctx.sim.tasks.get(upid)
    if task is None:
        raise ApiError(500, 'no such task')
    if task.user != ctx.authid:
        _perm(ctx, f'/nodes/{task.node}', ['Sys.Modify'])
    with ctx.sim.lock:
        if task.status == 'running':
            task.write('received interrupt')
            task.status = 'stopped'
            task.exitstatus = 'interrupted by signal'
    return None
