#!/bin/sh
# The Python that has moto and boto3: $EPU_MOTO_PYTHON, or the venv `./dev.sh moto` makes.
py="${EPU_MOTO_PYTHON:-$HOME/.cache/epu/moto/bin/python}"
if [ ! -x "$py" ]; then
    echo "no Python with moto at $py: run ./dev.sh moto (or set EPU_MOTO_PYTHON)" >&2
    exit 1
fi
exec "$py" "$@"
