# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures of the Phase 1 checks: scratch git repositories with Markdown files."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture(name='scratch_repo')
def fixture_scratch_repo(tmp_path):
    """A git repository under tmp_path; ``write(path, text, track=True)`` adds files."""
    subprocess.run(['git', 'init', '-q', str(tmp_path)], check=True)

    def write(path: str, text: str, track: bool = True):
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding='utf-8')
        if track:
            subprocess.run(['git', '-C', str(tmp_path), 'add', path], check=True)
        return target

    write.root = tmp_path
    return write
