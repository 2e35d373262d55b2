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
  # How many addresses each local worker process serves (each is still its own worker, with
  # its own bound session). auto: a process per address up to 4 per CPU, then about 4
  # processes per CPU (64 addresses on 2 CPUs: 8 processes of 8), since on a host with many
  # more addresses than cores a process woken per request costs more CPU than the request
  # itself. A number sets it; 1: a process per address, always.
  ips_per_process: auto
  # A tcp endpoint for workers on other hosts (`galileo farm join`). Requires CURVE:
  # generate keys with `galileo keys gen`, put the coordinator's secret key file in
  # server_secret_key_path and each allowed worker's public key file in authorized_keys_dir.
  listen: null            # e.g. tcp://0.0.0.0:5555
  server_secret_key_path: null
  authorized_keys_dir: null

# Where the farm sends. `rate_limit_per_ip` (requests/s per source IP) is optional: when
# absent the farm learns each upstream's limit from its 429s. Keys go in env vars.
# `rate_limit_per_key` (requests/s your API key's plan allows, shared by every IP; needs
# api_key_env) paces all IPs together at it; without it a keyed budget is learnt as one.
# Give both where both limits apply.
upstreams:
  jupiter:
    base_url: https://api.jup.ag/swap/v1
    api_key_env: JUPITER_API_KEY      # the env var holding your key (x-api-key)
    rate_limit_per_ip: null
    rate_limit_per_key: null          # e.g. 30 for a plan of 30 requests/s per key
    timeout_ms: 2000
  dflow:
    base_url: https://quote-api.dflow.net
    api_key_env: DFLOW_API_KEY
    rate_limit_per_ip: null
    rate_limit_per_key: null
    timeout_ms: 2000
  ultra:
    base_url: https://api.jup.ag/ultra/v1
    api_key_env: JUPITER_API_KEY
    rate_limit_per_ip: null
    rate_limit_per_key: null
    timeout_ms: 2000
  rpc:                                # blockhashes and lookup tables
    urls: [https://api.mainnet-beta.solana.com]
    url_envs: []                      # env vars holding URLs with an embedded key
    rate_limit_per_ip: null
    timeout_ms: 2000
  staked:                             # the `staked` lander's sendTransaction endpoints
    urls: []
    url_envs: []
    rate_limit_per_ip: null
    timeout_ms: 2000
  jito:                               # block engines; /api/v1/bundles is appended
    endpoints:
      - https://frankfurt.mainnet.block-engine.jito.wtf
      - https://amsterdam.mainnet.block-engine.jito.wtf
      - https://london.mainnet.block-engine.jito.wtf
      - https://ny.mainnet.block-engine.jito.wtf
      - https://tokyo.mainnet.block-engine.jito.wtf
      - https://slc.mainnet.block-engine.jito.wtf
      - https://dublin.mainnet.block-engine.jito.wtf
      - https://singapore.mainnet.block-engine.jito.wtf
      - https://mainnet.block-engine.jito.wtf
    uuid_env: null                    # env var with your Jito UUID (x-jito-auth), if you have one
    rate_limit_per_ip: 5.0            # Jito documents 5 requests/s per IP per region
    timeout_ms: 2000
    tip_floor_url: https://bundles.jito.wtf/api/v1/bundles/tip_floor   # landed tips' percentiles
  titan:                              # multi-leg: Titan's WebSocket quote streams
    ws_url: wss://api.titan.exchange/api/v1/ws
    token_env: TITAN_TOKEN            # the token Titan issued you (Bearer): one connection, on one IP
    token_envs: []                    # several tokens instead ([TITAN_A, TITAN_B]): a connection and an IP each
    stream_seconds: 60.0              # each stream is renewed (in place, without a gap) after this long
    idle_resubscribe_ms: 10000        # no update for this long: subscribe again
    titan_stream_limit: null          # streams per connection at most (null: what Titan's GetInfo allows)
    titan_debounce_ms: 200
    interval_ms: 1000
    num_quotes: 2
    providers: []

wallet:
  keypair_path: null                  # a Solana CLI JSON keypair (chmod 600); required for live landing

intermedium:                          # the mints each base mint round-trips through
  mints:
    - So11111111111111111111111111111111111111112     # SOL
    - EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v    # USDC
  disable_mints: []

blind_strategy:
  enable: false
  quote_provider: jupiter             # jupiter | dflow
  base_mints: []
  # - mint: So11111111111111111111111111111111111111112
  #   trade_size_range: [100_000_000, 2_000_000_000]   # raw units (lamports here); 0.1e9, 2e9 work too
  #   trade_range_count: 5
  #   trade_range_strategy: exponential                # linear | exponential | random
  #   lanes: []                                        # more ranges: [{min, max, count, strategy}]
  #   min_quote_profit: 20_000                         # per mint, in its raw units, after fees and tip
  enable_dexs: []                     # only these DEX labels (empty: all)
  exclude_dexes: []
  enable_landers: [jito]              # jito | staked | rpc
  only_direct_routes: false
  max_accounts: null                  # accounts a round trip may lock (null: 64); each leg gets half
  # No concurrency knobs: as many batches run at once as there are usable IPs.

multi_leg:                            # buy and sell legs from different aggregators (uses blind_strategy.base_mints)
  enable: false
  buy_legs: [ultra, titan]            # jupiter | dflow | ultra | titan (titan: WebSocket streams)
  sell_legs: [dflow, jupiter]         # jupiter | dflow | ultra
  titan_quote_wait_ms: 2000

lander:
  mode: dry_run                       # dry_run: build and sign, send nothing. live: real money.
  tip_lamports: 10000                 # Jito tip until the tip floor is known, or always (tip.percentile: null)
  tip:                                # the Jito tip follows Jito's tip floor ...
    percentile: 50                    # 25 | 50 | 75 | 95 | 99 of recently landed tips; null: tip_lamports
    max_profit_share: 0.5             # ... but never more than this share of the round trip's profit
    refresh_s: 10.0                   # how often the floor is read (through the farm)
  compute_unit_price_micro_lamports: 0  # staked / rpc priority fee until recent fees are known, or always
  priority_fee:                       # staked / rpc: follows getRecentPrioritizationFees ...
    percentile: 50                    # 0..100 over recent slots' fees on the writable accounts; null: fixed
    max_micro_lamports: 100000        # ... capped per compute unit ...
    max_profit_share: 0.5             # ... and at this share of the round trip's profit
    refresh_s: 10.0                   # a set of accounts is asked about at most this often
  cu_limit_multiplier: 1.1            # compute unit limit = simulated units x this
  max_quote_age_slots: 4              # quotes older than this (contextSlot vs the chain) are not landed
  rebroadcast_s: 2.0                  # staked / rpc: the same signed bytes again this often until landed or expired
  follow_timeout_s: 90.0
"""
