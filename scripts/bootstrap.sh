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
