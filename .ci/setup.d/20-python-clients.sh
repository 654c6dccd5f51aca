# Open Inference Protocol and OpenAPI clients (issue 10), sourced by .ci/setup.
#   venv      tritonclient[http] and schemathesis (.ci/requirements-clients.txt)
#   mlserver  MLServer + mlserver-sklearn + scikit-learn, the reference OIP
#             server, in its own environment (its pins are the peers' own:
#             ../shared/peers/requirements-mlserver.txt, beside the repository)
# The MLServer model (model.pkl) is trained by the test itself from the peers'
# train.py, so nothing data-derived is kept here.
pip_install "$ROOT/.ci/requirements-clients.txt"
link_tool schemathesis "$TOOLS/venv/bin/schemathesis"
PEERS="$ROOT/../shared/peers"
[ -f "$PEERS/requirements-mlserver.txt" ] || { echo "setup: $PEERS/requirements-mlserver.txt is missing" >&2; exit 1; }
pip_install "$PEERS/requirements-mlserver.txt" mlserver
link_tool mlserver "$TOOLS/mlserver/bin/mlserver"
