# The oracle for imported models (issue 26): the real XGBoost and LightGBM,
# and scikit-learn with skl2onnx and ONNX Runtime (model.onnx), in their own
# environment (.ci/tools/oracle), so their pins cannot break the clients'.
# tests/integration/imports.rs trains models with them and compares
# riskserve's answers to theirs on every row.
pip_install "$ROOT/.ci/requirements-oracle.txt" oracle
# A wrapper, not a link: Python finds its environment from the path it is
# started by.
printf '#!/bin/sh\nexec "%s" "$@"\n' "$TOOLS/oracle/bin/python" >"$TOOLS/oracle/python"
chmod +x "$TOOLS/oracle/python"
link_tool oracle-python "$TOOLS/oracle/python"
