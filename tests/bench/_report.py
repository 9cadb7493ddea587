# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmarks' report: the figures printed and written to tests/output/bench/NAME.json."""

from __future__ import annotations

import json
import os
import statistics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTPUT_DIR = os.path.join(ROOT, 'tests', 'output', 'bench')


def write_output(filename: str, data: dict) -> None:
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(OUTPUT_DIR, filename), 'w', encoding='utf-8') as handle:
        json.dump(data, handle, indent=2)


def ratio_report(name: str, benchmark: str, times: dict[str, list[float]], ratio: tuple[str, str],
                 digits: int = 3, goal: float | None = None, **extra: object) -> dict:
    """Each side's round times and median (``LABEL_seconds``, ``LABEL_median``), the ratio of the
    medians ``ratio[0] / ratio[1]``, the load average and, with ``goal``, whether the ratio meets it."""
    medians = {label: statistics.median(values) for label, values in times.items()}
    value = medians[ratio[0]] / medians[ratio[1]]
    report = {'benchmark': benchmark, **extra}
    report.update({f'{label}_seconds': [round(t, digits) for t in values] for label, values in times.items()})
    report.update({f'{label}_median': round(median, digits) for label, median in medians.items()})
    report['ratio'] = round(value, 3)
    report['load_average'] = [round(x, 2) for x in os.getloadavg()]
    if goal is not None:
        report['goal'] = f'<= {goal:.2f}'
        report['meets_goal'] = value <= goal
    print(json.dumps(report, indent=2))
    write_output(f'{name}.json', report)
    return report
