"""The commented template ``galileo config init`` writes. A test keeps it in step with the schema."""

from __future__ import annotations

__all__ = ["TEMPLATE"]

TEMPLATE = """\
# galileo.yaml: configuration of a galileo farm.
#
# Secrets are never written here. A key ending in `_env` names an environment variable
# that holds the secret (api_key_env: JUPITER_API_KEY); a key ending in `_path` names a file.
# Check this file with `galileo config check galileo.yaml`; see the addresses it selects
# with `galileo ips --config galileo.yaml`.

bot:
  network:
    # false: one worker on the default route (the kernel picks the source address).
    # true: one worker per usable local address (auto-detected, or manual_ips below).
    enable_multiple_ip: false
    # When non-empty, exactly these addresses are used (loopback allowed, for tests and demos).
    # Each is bind-probed at start; one that cannot be bound is skipped with a warning.
    manual_ips: []

  prometheus:
    # The coordinator serves /metrics here (one place for every worker's series).
    enable: true
    listen: 127.0.0.1:9898

farm:
  # Where the coordinator keeps its control socket, worker socket and lock.
  # Empty: $XDG_RUNTIME_DIR/galileo, or /tmp/galileo-$UID.
  runtime_dir: ""
  # A tcp endpoint for workers on other hosts (`galileo farm join`). Requires CURVE:
  # generate keys with `galileo keys gen`, put the coordinator's secret key file in
  # server_secret_key_path and each allowed worker's public key file in authorized_keys_dir.
  listen: null            # e.g. tcp://0.0.0.0:5555
  server_secret_key_path: null
  authorized_keys_dir: null
"""
