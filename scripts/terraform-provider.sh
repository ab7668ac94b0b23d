#!/usr/bin/env bash
# Build the Snowflake Terraform provider from the Go module proxy and cache it by version outside
# the clone, laid out as a filesystem mirror for `terraform init` (scripts/tf_validate.py).
# The registry is not reachable here; the Go proxy serves github.com/snowflakedb/
# terraform-provider-snowflake up to v1.2.0 (a `go build` of minutes on two cores, once).
# Prints the path of the binary on stdout; progress goes to stderr.
#
#   scripts/terraform-provider.sh [--print-mirror]
#
#   RETAIL_TF_PROVIDER_VERSION  default 1.2.0
#   RETAIL_TF_CACHE             default ${XDG_CACHE_HOME:-~/.cache}/retail-pipeline/terraform
set -euo pipefail

version="${RETAIL_TF_PROVIDER_VERSION:-1.2.0}"
cache="${RETAIL_TF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/retail-pipeline/terraform}"
mirror="$cache/providers"
os="$(uname -s | tr '[:upper:]' '[:lower:]')"
case "$(uname -m)" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch="$(uname -m)" ;;
esac
platform="${os}_${arch}"
# The registry address the configuration's required_providers names (snowflakedb/snowflake: the
# Snowflake-Labs namespace stops at 1.0.5; 1.1+ and 2.x are published only under snowflakedb).
dir="$mirror/registry.terraform.io/snowflakedb/snowflake/$version/$platform"
binary="$dir/terraform-provider-snowflake_v$version"
module="github.com/snowflakedb/terraform-provider-snowflake"

report() {
  if [[ "${1:-}" == "--print-mirror" ]]; then echo "$mirror"; else echo "$binary"; fi
}

if [[ -x "$binary" ]]; then
  report "${1:-}"
  exit 0
fi

command -v go >/dev/null || { echo "terraform-provider: go not found (need Go 1.23+)" >&2; exit 1; }

mkdir -p "$cache"
work="$(mktemp -d "$cache/build-XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

echo "terraform-provider: downloading $module@v$version from the Go module proxy" >&2
(cd "$work" && go mod init scratch >/dev/null 2>&1 && go mod download -json "$module@v$version") \
  >"$work/download.json"
source_dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' "$work/download.json")"
[[ -d "$source_dir" ]] || { echo "terraform-provider: go mod download gave no source" >&2; exit 1; }

# The module's go.mod names the Snowflake-Labs path, so `go install module@version` refuses it;
# build a writable copy of the module cache directory instead.
cp -r "$source_dir" "$work/src"
chmod -R u+w "$work/src"
echo "terraform-provider: go build (slow the first time; cached in $dir)" >&2
start=$SECONDS
(cd "$work/src" && go build -trimpath -ldflags="-s -w" -o "$work/provider" .)
echo "terraform-provider: built in $((SECONDS - start)) s" >&2

mkdir -p "$dir"
mv "$work/provider" "$binary.tmp"
mv "$binary.tmp" "$binary"
report "${1:-}"
