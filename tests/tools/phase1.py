# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Phase 1 checks that need no Terraform: Markdown links, provider pins, ownership wording.

Used by the gate (``python -m tests.tools.gate``) and by the tests under
tests/integration/phase1/, so ``make gate`` and ``make test`` judge the same thing.
"""

from __future__ import annotations

import os
import re
import subprocess
import unicodedata
from urllib.parse import unquote

from tests.tools import terraform_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROVIDER_FILES = ('terraform/providers.tf', 'terraform/environments/k3s-dev/providers.tf')
#: The baseline DESIGN.md settles on; both files must declare exactly this.
PROVIDER_BASELINE = {
    'required_version': '>= 1.6, < 2.0',
    'providers': {'proxmox': {'source': 'bpg/proxmox', 'version': '~> 0.111'}},
}


# ---------------------------------------------------------------- repository files
def repo_files(root: str = ROOT) -> list[str]:
    """Tracked files plus new files not ignored (git), relative to ``root``, sorted."""
    skip = {'.git', '.venv', '.collections', 'collections', '.ansible', 'state', '.terraform', '__pycache__'}
    try:
        tracked = subprocess.run(['git', '-C', root, 'ls-files', '-z', '--cached'],
                                 capture_output=True, check=True).stdout
        others = subprocess.run(['git', '-C', root, 'ls-files', '-z', '--others', '--exclude-standard'],
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        tracked = others = b''
    if tracked:
        names = {name for name in tracked.decode('utf-8').split('\0') if name}
        # New files count too, except what tools create in a checkout (collection links, caches).
        names |= {name for name in others.decode('utf-8').split('\0')
                  if name and name.split('/', 1)[0] not in skip}
        return sorted(name for name in names if os.path.lexists(os.path.join(root, name)))
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        found += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames]
    return sorted(found)


def markdown_files(root: str = ROOT) -> list[str]:
    return [name for name in repo_files(root) if name.lower().endswith('.md')]


# ---------------------------------------------------------------- Markdown links
_FENCE = re.compile(r'^\s{0,3}(`{3,}|~{3,})')
_INLINE_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+"[^"]*"|\s+\'[^\']*\')?\s*\)')
_REF_DEF = re.compile(r'^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)')
_HTML_LINK = re.compile(r'<(?:a|img)\s[^>]*?(?:href|src)="([^"]*)"', re.IGNORECASE)
_CODE_SPAN = re.compile(r'(`+)(?:(?!\1).)+?\1')
_SCHEME = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*:')
_HEADING = re.compile(r'^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$')
_EXPLICIT_ANCHOR = re.compile(r'<a\s[^>]*(?:id|name)="([^"]+)"', re.IGNORECASE)


def markdown_links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link and image outside code blocks and code spans."""
    links = []
    fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        if match:
            fence = match.group(1)
            continue
        plain = _CODE_SPAN.sub('', line)
        for regex in (_INLINE_LINK, _REF_DEF, _HTML_LINK):
            for found in regex.finditer(plain):
                target = found.group(1).strip()
                if target.startswith('<') and target.endswith('>'):
                    target = target[1:-1]
                links.append((number, target))
    return links


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading (before de-duplication)."""
    text = re.sub(r'`([^`]*)`', r'\1', heading)
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', text)
    text = re.sub(r'<[^>]+>', '', text)
    text = text.strip().lower()
    text = ''.join(ch for ch in text if ch in ' -_' or unicodedata.category(ch)[0] in 'LNM')
    return text.replace(' ', '-')


def markdown_anchors(text: str) -> set[str]:
    anchors: set[str] = set()
    counts: dict[str, int] = {}
    fence = None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        if match:
            fence = match.group(1)
            continue
        anchors.update(_EXPLICIT_ANCHOR.findall(line))
        heading = _HEADING.match(line)
        if heading:
            slug = github_slug(heading.group(2))
            count = counts.get(slug, 0)
            anchors.add(slug if count == 0 else f'{slug}-{count}')
            counts[slug] = count + 1
    return anchors


def broken_links(root: str = ROOT, files: list[str] | None = None) -> tuple[list[str], int]:
    """Every relative link in the repository's Markdown files that does not resolve.

    Returns (problems, number of relative links checked). A target resolves when it names a
    file of the repository (tracked, or new and not ignored) or a directory holding one, and
    its ``#fragment``, if any, names a heading or explicit anchor of that Markdown file.
    """
    all_files = repo_files(root)
    known = set(all_files)
    known_dirs = {os.path.dirname(name) for name in all_files}
    for name in list(known_dirs):
        while name:
            name = os.path.dirname(name)
            known_dirs.add(name)
    problems = []
    checked = 0
    for name in files if files is not None else [n for n in all_files if n.lower().endswith('.md')]:
        with open(os.path.join(root, name), encoding='utf-8') as handle:
            text = handle.read()
        for line, target in markdown_links(text):
            if not target or _SCHEME.match(target) or target.startswith('//'):
                continue
            checked += 1
            path_part, dummy, fragment = target.partition('#')
            path_part = unquote(path_part.split('?', 1)[0])
            if path_part:
                base = root if path_part.startswith('/') else os.path.join(root, os.path.dirname(name))
                resolved = os.path.relpath(os.path.normpath(os.path.join(base, path_part.lstrip('/'))), root)
            else:
                resolved = name
            where = f'{name}:{line}: ({target})'
            if resolved.startswith('..'):
                problems.append(f'{where} points outside the repository')
                continue
            resolved = '' if resolved == '.' else resolved
            if resolved not in known and resolved not in known_dirs:
                reason = 'is ignored or untracked' if os.path.exists(os.path.join(root, resolved)) else 'does not exist'
                problems.append(f'{where} {resolved or "."} {reason}')
                continue
            if fragment and resolved in known and resolved.lower().endswith('.md'):
                with open(os.path.join(root, resolved), encoding='utf-8') as handle:
                    anchors = markdown_anchors(handle.read())
                if unquote(fragment).lower() not in {a.lower() for a in anchors}:
                    problems.append(f'{where} {resolved} has no heading or anchor #{fragment}')
    return problems, checked


# ---------------------------------------------------------------- provider pins
def _strip_hcl_comments(text: str) -> str:
    out = []
    i = 0
    in_string = False
    while i < len(text):
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == '\\' and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                in_string = False
            i += 1
            continue
        if ch == '"':
            in_string = True
            out.append(ch)
            i += 1
        elif ch == '#' or text.startswith('//', i):
            end = text.find('\n', i)
            i = len(text) if end < 0 else end
        elif text.startswith('/*', i):
            end = text.find('*/', i + 2)
            i = len(text) if end < 0 else end + 2
        else:
            out.append(ch)
            i += 1
    return ''.join(out)


def _block_body(text: str, start: int) -> tuple[str, int]:
    """The text between the brace at ``start`` and its match, skipping strings."""
    depth = 0
    in_string = False
    i = start
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == '\\':
                i += 2
                continue
            if ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == '{':
            depth += 1
        elif ch == '}':
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
        i += 1
    raise ValueError('unbalanced braces')


def _top_level_assignments(body: str) -> dict[str, str]:
    """``key = "string"`` and ``key = { ... }`` at the top level of a block body."""
    result: dict[str, str] = {}
    i = 0
    pattern = re.compile(r'[\s,]*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*')
    while i < len(body):
        match = pattern.match(body, i)
        if not match:
            brace = body.find('{', i)
            newline = body.find('\n', i)
            if brace >= 0 and (newline < 0 or brace < newline):
                dummy, i = _block_body(body, brace)
            else:
                i = len(body) if newline < 0 else newline + 1
            continue
        key, i = match.group(1), match.end()
        if body.startswith('{', i):
            value, i = _block_body(body, i)
            result[key] = '{' + value + '}'
        else:
            string = re.match(r'"((?:[^"\\]|\\.)*)"', body[i:])
            if string:
                result[key] = string.group(1)
                i += string.end()
            else:
                end = body.find('\n', i)
                result[key] = body[i:end if end >= 0 else len(body)].strip()
                i = len(body) if end < 0 else end + 1
    return result


def provider_constraints(path: str) -> dict:
    """``required_version`` and ``required_providers`` of the ``terraform`` blocks of a .tf file."""
    with open(path, encoding='utf-8') as handle:
        text = _strip_hcl_comments(handle.read())
    result: dict = {'required_version': None, 'providers': {}}
    for match in re.finditer(r'(?m)^\s*terraform\s*\{', text):
        body, dummy = _block_body(text, match.end() - 1)
        version = re.search(r'(?m)^\s*required_version\s*=\s*"([^"]*)"', body)
        if version:
            result['required_version'] = version.group(1)
        for providers in re.finditer(r'(?m)^\s*required_providers\s*\{', body):
            inner, dummy = _block_body(body, providers.end() - 1)
            for name, value in _top_level_assignments(inner).items():
                if value.startswith('{'):
                    attrs = _top_level_assignments(value[1:-1])
                    result['providers'][name] = {k: attrs[k] for k in ('source', 'version') if k in attrs}
                else:
                    result['providers'][name] = {'version': value}
    return result


def _provider_pin_problems(name: str, providers: dict, pin: dict) -> list[str]:
    """The provider pin (tests/setup/terraform-provider.env) against one file's required_providers.

    The pin holds a full source address (host/namespace/type); a ``namespace/type`` source in a
    file is matched on those two parts.
    """
    where = os.path.relpath(terraform_cli.PIN_FILE, terraform_cli.ROOT)
    source = pin['source']
    matching = {local: req for local, req in providers.items()
                if req.get('source') == source
                or (req.get('source', '').count('/') == 1 and source.endswith('/' + req['source']))}
    if not matching:
        return [f'{name}: no required provider has the source of the provider pin {source} ({where})']
    problems = []
    for local, req in matching.items():
        try:
            ok = not req.get('version') or terraform_cli.version_satisfies(pin['version'], req['version'])
        except ValueError as exc:
            ok, req = False, dict(req, version=f'{req["version"]} ({exc})')
        if not ok:
            problems.append(f'{name}: the provider pin {pin["version"]} ({where}) does not satisfy '
                            f'{local} version {req["version"]!r}')
    return problems


def pin_problems(root: str = ROOT, pin: dict | None = None) -> tuple[list[str], dict]:
    """Differences between the two providers.tf files and from the baseline, and a provider pin
    (default: the one ``make setup`` builds into the local mirror) that either file does not allow."""
    pin = terraform_cli.PROVIDER_PIN if pin is None else pin
    problems = []
    found = {}
    for name in PROVIDER_FILES:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            problems.append(f'{name}: missing')
            continue
        found[name] = provider_constraints(path)
        for key, want in (('required_version', PROVIDER_BASELINE['required_version']),
                          ('providers', PROVIDER_BASELINE['providers'])):
            if found[name][key] != want:
                problems.append(f'{name}: {key} is {found[name][key]!r}, the baseline is {want!r}')
        problems += _provider_pin_problems(name, found[name]['providers'], pin)
    if len(found) == 2:
        first, second = (found[name] for name in PROVIDER_FILES)
        if first != second:
            problems.append(f'{PROVIDER_FILES[0]} declares {first!r} but {PROVIDER_FILES[1]} declares {second!r}')
    return problems, found


# ---------------------------------------------------------------- ownership wording
# Terraform owns VM lifecycle only; a node's OS belongs to Talos (Talos nodes) or Ansible
# (SSH-managed Ubuntu nodes). These patterns find sentences that give Terraform an OS job.
_OS_OBJECT = (r"(?:(?:the|a|an|each|every|its|their)\s+)?(?:(?:node|nodes|node's|guest|vm|vm's|host|talos|ubuntu)\s+)?"
              r"(?:os\b|operating\s+systems?|packages?|software|services?|users?\b|accounts?|ssh\s+daemon|sshd|"
              r"docker|containerd|kubelet|kubernetes|talos\s+(?:machine\s+)?config|machine\s+config|"
              r"sysctls?|kernel\s+(?:modules?|parameters?)|hostname|firewall|node\s+configuration)")
_TF = r'\bterraform\b'
_GAP = r"(?:\s+[\w'/-]+){0,4}?"
OWNERSHIP_PATTERNS = (
    ('terraform-configures-os',
     re.compile(_TF + r'(?P<mid>' + _GAP + r')\s+(?:configures?|configured|configuring|sets?\s+up|manages?|hardens?|'
                r'owns?|provisions?|updates?|upgrades?)\s+' + _OS_OBJECT, re.IGNORECASE)),
    ('terraform-installs-software',
     re.compile(_TF + r'(?P<mid>' + _GAP + r')\s+(?:installs?|installing|deploys?|applies|apply)\s+' + _OS_OBJECT,
                re.IGNORECASE)),
    ('os-configured-by-terraform',
     re.compile(r'\b(?:os|operating\s+systems?|packages?|services?|node\s+configuration|machine\s+config)'
                r'(?P<mid>(?:\s+[\w\'/-]+){0,3}?)\s+(?:is|are|gets?|will\s+be|being)\s+(?:configured|installed|managed|owned|set\s+up)'
                r'\s+(?:by|through|via|with)\s+terraform\b', re.IGNORECASE)),
    ('terraform-guest-scripts',
     re.compile(_TF + r'(?P<mid>[^.;:]{0,80}?)\b(?:remote-exec|runcmd|write_files|package_upgrade|'
                r'user[-_]data\s+(?:scripts?|packages?)|cloud-init\s+(?:scripts?|packages?|runcmd))', re.IGNORECASE)),
    ('terraform-runs-commands-in-guest',
     re.compile(_TF + r'(?P<mid>' + _GAP + r')\s+(?:runs?|executes?)\s+(?:commands?|scripts?|ansible|playbooks?)\s+'
                r'(?:on|in|inside)\s+(?:the\s+)?(?:nodes?|guests?|vms?)', re.IGNORECASE)),
)
#: A match is not a claim when its own clause negates it, or when the sentence talks about
#: such wording (the tracker's "wording that implies ..." task).
_NEGATION = re.compile(r"\b(?:never|not|no|nor|neither|cannot|without|n't)\b|n't\b", re.IGNORECASE)
_META = re.compile(r'\b(?:wording|implies|imply|implying|phrasing|language\s+that|claims?\s+that)\b', re.IGNORECASE)


def _sentences(text: str):
    """(line of the sentence start, sentence) for the prose of a Markdown file."""
    fence = None
    paragraph: list[tuple[int, str]] = []

    def flush():
        if not paragraph:
            return
        start = paragraph[0][0]
        joined = ' '.join(line for dummy, line in paragraph)
        offsets = []
        pos = 0
        for number, line in paragraph:
            offsets.append((pos, number))
            pos += len(line) + 1
        for match in re.finditer(r'[^.!?]+(?:[.!?]+|$)', joined):
            line_no = start
            begin = match.start() + len(match.group(0)) - len(match.group(0).lstrip())
            for offset, number in offsets:
                if offset <= begin:
                    line_no = number
            yield line_no, match.group(0).strip()
        paragraph.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        if match:
            yield from flush()
            fence = match.group(1)
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith(('#', '|', '- ', '* ', '> ')) or re.match(r'^\d+\.\s', stripped):
            yield from flush()
            if stripped:
                paragraph.append((number, stripped.lstrip('#|-*> ').replace('|', '. ')))
                if stripped.startswith(('#', '|')):
                    yield from flush()
            continue
        paragraph.append((number, stripped))
    yield from flush()


def ownership_findings(text: str) -> tuple[list[tuple[int, str, str]], list[tuple[int, str, str]]]:
    """(claims, excused mentions), each as (line, pattern id, sentence)."""
    claims, excused = [], []
    for line, sentence in _sentences(text):
        plain = re.sub(r'[`*_]', '', sentence)
        for pattern_id, regex in OWNERSHIP_PATTERNS:
            for match in regex.finditer(plain):
                prefix = plain[:match.start()]
                clause = re.split(r'[,;:]|\b(?:but|while|whereas)\b', prefix)[-1]
                if _NEGATION.search(match.group('mid') or '') or _NEGATION.search(clause) or _META.search(prefix):
                    excused.append((line, pattern_id, sentence))
                else:
                    claims.append((line, pattern_id, sentence))
    return claims, excused


def ownership_problems(root: str = ROOT, files: list[str] | None = None) -> tuple[list[str], list[str]]:
    """OS-ownership claims about Terraform in the repository's Markdown files."""
    problems, excused = [], []
    for name in files if files is not None else markdown_files(root):
        with open(os.path.join(root, name), encoding='utf-8') as handle:
            claims, negated = ownership_findings(handle.read())
        problems += [f'{name}:{line}: [{pid}] {sentence}' for line, pid, sentence in claims]
        excused += [f'{name}:{line}: [{pid}] {sentence}' for line, pid, sentence in negated]
    return problems, excused
