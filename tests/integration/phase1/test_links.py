# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every relative link of every Markdown file resolves; the checker finds the broken ones."""

from __future__ import annotations

import glob
import os

from tests.tools import phase1

MAJOR_DOCS = (
    'docs/EM-Infra-Talos-Proxmox-Architecture.md',
    'docs/infra-roadmap-single-host-k3s-dev.md',
    'docs/EM-Infra-Phase1-Implementation-Tracker.md',
    'terraform/README.md',
    'terraform/environments/k3s-dev/README.md',
)


def test_every_relative_markdown_link_resolves():
    files = phase1.markdown_files()
    assert 'docs/README.md' in files and 'README.md' in files
    problems, checked = phase1.broken_links()
    assert problems == []
    assert checked > 50


def test_every_major_doc_links_back_to_the_index():
    """The major docs and every other document in docs/ (the step documents too) link to the index."""
    index = os.path.join(phase1.ROOT, 'docs', 'README.md')
    docs = sorted(set(MAJOR_DOCS) | {os.path.relpath(path, phase1.ROOT)
                                     for path in glob.glob(os.path.join(phase1.ROOT, 'docs', '*.md'))})
    docs.remove('docs/README.md')
    assert len(docs) >= 10
    for name in docs:
        path = os.path.join(phase1.ROOT, name)
        with open(path, encoding='utf-8') as handle:
            targets = {target.split('#')[0] for dummy, target in phase1.markdown_links(handle.read())}
        resolved = {os.path.normpath(os.path.join(os.path.dirname(path), target)) for target in targets if target}
        assert index in resolved, f'{name} does not link to docs/README.md'


def test_broken_targets_are_reported_with_file_and_line(scratch_repo):
    scratch_repo('docs/a.md', '# A\n\n## Second part\n\nsee [b](./b.md) and [gone](./gone.md)\n'
                              '![img](../img/x.png) [anchor](#second-part) [bad anchor](#third)\n')
    scratch_repo('docs/b.md', 'back to [a](a.md#second-part) and [a, wrong](a.md#nope) and [up](../../outside.md)\n')
    scratch_repo('state/secret.md', 'ignored\n', track=False)
    scratch_repo('.gitignore', 'state/\n')
    scratch_repo('README.md', '[docs](docs/) [state](state/secret.md) [web](https://example.invalid/x.md) '
                              '[mail](mailto:a@b.invalid)\n')
    problems, checked = phase1.broken_links(str(scratch_repo.root))
    assert problems == [
        'README.md:1: (state/secret.md) state/secret.md is ignored or untracked',
        'docs/a.md:5: (./gone.md) docs/gone.md does not exist',
        'docs/a.md:6: (../img/x.png) img/x.png does not exist',
        'docs/a.md:6: (#third) docs/a.md has no heading or anchor #third',
        'docs/b.md:1: (a.md#nope) docs/a.md has no heading or anchor #nope',
        'docs/b.md:1: (../../outside.md) points outside the repository',
    ]
    assert checked == 10


def test_links_in_code_are_not_links(scratch_repo):
    scratch_repo('x.md', '```md\n[no](missing.md)\n```\n\n`[no](missing2.md)` and ~~~\n\n~~~\n[no](m3.md)\n~~~\n')
    assert phase1.broken_links(str(scratch_repo.root)) == ([], 0)


def test_github_heading_slugs():
    text = '# Inventory intent\n## cluster.yaml\n## Failure and resume rules\n## `make gate` (Phase 1)\n## Inventory intent\n'
    assert phase1.markdown_anchors(text) == {'inventory-intent', 'clusteryaml', 'failure-and-resume-rules',
                                             'make-gate-phase-1', 'inventory-intent-1'}
