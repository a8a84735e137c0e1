# Sourced by the GPU scripts: make the checkout importable on a bare device machine.
# Its image has torch, Lightning, torchmetrics, tensorboard and matplotlib but not
# jsonargparse; those wheels travel in .whl/ (see docs/results.md for the download command).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! python3 -c "import jsonargparse, docstring_parser" 2>/dev/null && [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
