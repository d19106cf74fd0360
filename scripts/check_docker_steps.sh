#!/usr/bin/env bash
# The Dockerfile's steps without a Docker engine: the same install into a fresh virtual environment, the
# same layout (package in site-packages, static/ and templates/ in the working directory), the same weight
# conversion, then the server is started and asked for its health, /docs (offline assets), a page with the
# sample images and a prediction. Usage: bash scripts/check_docker_steps.sh   (about a minute; needs PyPI)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/srv" "$work/data"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/engine" "$repo/app" "$work/src/"   # COPY ... /src
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$work/src"                                          # RUN pip install /src
rm -rf "$work/src"
cp -r "$repo/static" "$repo/templates" "$work/srv/"                                       # WORKDIR + COPY
cd "$work/srv"
"$work/venv/bin/python" -m engine.models.registry prepare --cache-dir "$work/data/cache"  # RUN ... prepare
port="$("$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
CNN_VIS_DATA_DIR="$work/data" "$work/venv/bin/cnn-visualiser" serve --port "$port" > "$work/server.log" 2>&1 &
server=$!
"$work/venv/bin/python" - "$port" "$repo/static/samples/cat.jpg" <<'PY'
import json, sys, time, urllib.request
port, cat = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
for _ in range(100):
    try:
        health = urllib.request.urlopen(f"{base}/api/health", timeout=2).read()  # the HEALTHCHECK
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("the server did not start")
assert json.loads(health) == {"status": "ok"}, health
docs = urllib.request.urlopen(f"{base}/docs").read().decode()
assert "/docs-assets/swagger-ui.css" in docs and "cdn" not in docs, "the /docs page should use the vendored assets"
home = urllib.request.urlopen(f"{base}/").read().decode()
assert 'data-file="cat.jpg"' in home, "the explorer should offer the sample images"
boundary = "xx-boundary"
body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"cat.jpg\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n").encode() + open(cat, "rb").read() + f"\r\n--{boundary}--\r\n".encode()
request = urllib.request.Request(f"{base}/api/models/efficientnet_lite0/predict", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
top = json.loads(urllib.request.urlopen(request).read())["classes"][0]
print(f"health ok, /docs offline, samples listed, predict: {top['label']} ({top['probability']:.2f})")
PY
echo "the Dockerfile's steps work"
