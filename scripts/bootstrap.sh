# Sourced by scripts/demo and scripts/test: create .venv if missing and install the package into it.
# Usage: bootstrap_venv EXTRAS   (e.g. "" or "[test]")
bootstrap_venv() {
    local extras="$1"
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "tom_education needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "==> creating the virtual environment in .venv"
        "$python" -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip
    fi
    echo "==> installing tom_education${extras} into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}" 2> >(grep -v "WARNING: Location" >&2)
}

# Bootstrap's CSS/JS for offline use (a classroom without internet, CI): tom_base loads them from a CDN
# otherwise. Fetched from the npm registry once into var/vendor; skipped quietly when npm is absent.
vendor_bootstrap() {
    local target=var/vendor/bootstrap
    [ -f "$target/css/bootstrap.min.css" ] && return 0
    command -v npm >/dev/null || return 0
    echo "==> fetching Bootstrap 5.3.8 from the npm registry for offline pages"
    local work
    work=$(mktemp -d)
    if (cd "$work" && npm pack --silent bootstrap@5.3.8 >/dev/null 2>&1 && tar -xzf bootstrap-5.3.8.tgz); then
        mkdir -p "$target"
        cp -r "$work/package/dist/css" "$work/package/dist/js" "$target/"
    fi
    rm -rf "$work"
}
