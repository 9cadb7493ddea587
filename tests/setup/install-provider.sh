#!/usr/bin/env bash
# Makes the pinned bpg/proxmox Terraform provider available without the Terraform registry.
#
# Usage: tests/setup/install-provider.sh   (make setup runs it after install-terraform.sh)
#
# Writes, in the checkout (.cache/ is git-ignored and left out of the collection build):
#   .cache/terraform/providers/    a Terraform filesystem mirror (unpacked layout) holding the
#                                  provider at the pin of tests/setup/terraform-provider.env
#   .cache/terraform/terraformrc   the Terraform CLI config (the Makefile exports it as
#                                  TF_CLI_CONFIG_FILE): that provider from the mirror, every other
#                                  one as usual. Empty when no mirror could be made, so that
#                                  terraform init goes to the registry as it would without it.
#
# Where the binary comes from, cheapest first: the mirror already holds it (its sha256 is in
# .cache/terraform/provider.sha256); a per-user copy under
# ${XDG_CACHE_HOME:-~/.cache}/eminfra/terraform-providers/, shared by every checkout of this
# user; else Go (the path in EMINFRA_GO, else go on PATH, else /usr/local/go/bin/go) builds it
# from the provider's Go module at the pin, and the per-user copy is kept. Without Go and
# without a copy, or when the build fails, the CLI config is left empty and setup goes on.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck source=tests/setup/terraform-provider.env
. "$root/tests/setup/terraform-provider.env"
source_addr=${PROVIDER_SOURCE:?} version=${PROVIDER_VERSION:?}
go_module=${PROVIDER_GO_MODULE:?} go_sum=${PROVIDER_GO_SUM:?}
type=${source_addr##*/}
short=${source_addr#*/}

start_ns=$(date +%s%N)
elapsed() {
  local ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
  if [ "$ms" -ge 60000 ]; then
    printf '%dm%02ds' $((ms / 60000)) $((ms % 60000 / 1000))
  else
    printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100))
  fi
}
say() { echo "install-provider: $*" >&2; }

# The platform directory Terraform looks for on this machine (its GOOS_GOARCH).
case "$(uname -s)" in
  Linux) os=linux ;; Darwin) os=darwin ;; FreeBSD) os=freebsd ;; *) os=$(uname -s | tr '[:upper:]' '[:lower:]') ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; i?86) arch=386 ;; armv*) arch=arm ;; *) arch=$(uname -m) ;;
esac
platform=${os}_${arch}

binary_name=terraform-provider-${type}_v${version}
rel=$source_addr/$version/$platform/$binary_name
tf_dir=$root/.cache/terraform
mirror=$tf_dir/providers
target=$mirror/$rel
stamp=$tf_dir/provider.sha256
rc_file=$tf_dir/terraformrc
user_dir=${XDG_CACHE_HOME:-${HOME:?}/.cache}/eminfra/terraform-providers
user_copy=$user_dir/$rel
mkdir -p "$tf_dir"

# Writes the CLI config atomically, and only when its content changes.
write_rc() {
  local tmp
  tmp=$(mktemp "$tf_dir/.terraformrc.XXXXXX")
  cat > "$tmp"
  chmod 0644 "$tmp"
  if cmp -s "$tmp" "$rc_file"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$rc_file"
  fi
}

mirror_rc() {
  local path=${mirror//\\/\\\\}
  path=${path//\"/\\\"}
  write_rc <<EOF
# Written by tests/setup/install-provider.sh: $short $version from the local filesystem mirror,
# every other provider as usual.
provider_installation {
  filesystem_mirror {
    path    = "$path"
    include = ["$source_addr"]
  }
  direct {
    exclude = ["$source_addr"]
  }
}
EOF
}

# True when FILE exists and its sha256 is the one recorded in SUMFILE.
sum_matches() {
  local file=$1 sumfile=$2 want
  [ -f "$file" ] && [ -f "$sumfile" ] || return 1
  want=$(cut -d' ' -f1 < "$sumfile")
  [ -n "$want" ] && [ "$(sha256sum < "$file" | cut -d' ' -f1)" = "$want" ]
}

# Copies SRC to DEST through a temporary file in DEST's directory, so a reader never sees half.
install_file() {
  local src=$1 dest=$2 tmp
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp "$(dirname "$dest")/.${binary_name}.XXXXXX")
  cp "$src" "$tmp"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$dest"
}

# Builds the provider into $1. `go install MODULE@VERSION` is not used: it also asks the module
# proxy for the module's version list (to report a deprecation), which a proxy that serves only
# the pinned versions refuses (403 Forbidden), while `go mod download` of the one version works.
build() {
  local out=$1 go json dir sum
  go=${EMINFRA_GO:-$(command -v go || echo /usr/local/go/bin/go)}
  if ! [ -x "$go" ]; then
    say "no Go toolchain (EMINFRA_GO, go on PATH, /usr/local/go/bin/go), so $short $version cannot be built here"
    return 1
  fi
  say "building $short $version ($platform) from $go_module@v$version with $("$go" env GOVERSION)"
  if ! json=$(cd / && "$go" mod download -json "$go_module@v$version"); then
    say "go mod download failed: $(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<< "$json")"
    return 1
  fi
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<< "$json")
  sum=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<< "$json")
  if [ "$sum" != "$go_sum" ]; then
    say "$go_module@v$version has the Go checksum ${sum:-(none)}, but tests/setup/terraform-provider.env pins $go_sum"
    return 1
  fi
  # As the provider's own releases: no cgo, stripped, the version in main.version.
  (cd "$dir" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch \
    "$go" build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out" .)
}

if sum_matches "$target" "$stamp"; then
  mirror_rc
  say "$short $version ($platform) already in .cache/terraform/providers; CLI config .cache/terraform/terraformrc ($(elapsed))"
  exit 0
fi

# Only the pinned version stays in the mirror: Terraform would pick the newest that matches.
rm -rf "${mirror:?}/$source_addr" "$stamp"

how='' src=''
if sum_matches "$user_copy" "$user_copy.sha256"; then
  how="copied from $user_copy" src=$user_copy
else
  built=$(mktemp -d "$tf_dir/.build.XXXXXX")
  trap 'rm -rf "$built"' EXIT
  if build "$built/$binary_name"; then
    how="built from $go_module@v$version" src=$built/$binary_name
    if mkdir -p "$(dirname "$user_copy")" 2> /dev/null && [ -w "$(dirname "$user_copy")" ]; then
      install_file "$built/$binary_name" "$user_copy"
      sha256sum < "$user_copy" > "$user_copy.sha256"
      how="$how (a copy kept in $user_dir)"
    fi
  fi
fi

if [ -z "$how" ]; then
  write_rc < /dev/null
  say "no local mirror: terraform init installs $short from the registry (empty CLI config .cache/terraform/terraformrc) ($(elapsed))"
  exit 0
fi
install_file "$src" "$target"
sha256sum < "$target" > "$stamp"
mirror_rc
say "$short $version ($platform) $how into .cache/terraform/providers; CLI config .cache/terraform/terraformrc ($(elapsed))"
