"""Issue 17.8: `galileo config check` says what the config will do."""

from __future__ import annotations

from pathlib import Path

from galileo.tx import ephemeral_keypair, write_keypair
from tests.conftest import run_galileo

SOL = "So11111111111111111111111111111111111111112"


def check(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "galileo.yaml"
    path.write_text(text)
    out = run_galileo("config", "check", str(path), env=env)
    assert out.returncode == 0, out.stderr
    return [line.strip() for line in out.stdout.splitlines()]


def test_the_defaults_say_dry_run_and_no_strategy(tmp_path: Path) -> None:
    lines = check(tmp_path, "")
    assert "lander: dry run: transactions are built and signed, nothing is sent (lander.mode: live sends)" in lines
    assert "strategies: none enabled" in lines
    assert "wallet: none" in lines


def test_a_live_config_names_mode_strategies_wallet_and_which_limits_are_per_ip(tmp_path: Path) -> None:
    wallet = tmp_path / "id.json"
    keypair = ephemeral_keypair()
    write_keypair(wallet, keypair)
    wallet.chmod(0o640)
    lines = check(
        tmp_path,
        f"""
upstreams:
  jupiter: {{base_url: 'https://api.jup.ag/swap/v1', api_key_env: JUPITER_API_KEY}}
  dflow: {{base_url: 'https://quote-api.dflow.net', api_key_env: null, rate_limit_per_ip: 12.5}}
  jito: {{endpoints: ['https://ny.mainnet.block-engine.jito.wtf', 'https://tokyo.mainnet.block-engine.jito.wtf']}}
wallet: {{keypair_path: '{wallet}'}}
blind_strategy:
  enable: true
  base_mints: [{{mint: {SOL}, trade_size_range: [0.1e9, 2e9]}}]
multi_leg: {{enable: true, buy_legs: [dflow], sell_legs: [jupiter]}}
lander: {{mode: live, tip_lamports: 20_000}}
""",
        env={"JUPITER_API_KEY": "set-for-the-test"},
    )
    assert (
        "lander: LIVE: signed transactions are sent (landers: jito; tip: the tip floor's 50th percentile, "
        "at most 50% of the profit, 20000 lamports until the floor is known)"
    ) in lines
    blind = f"blind (quotes from jupiter; base mints: {SOL})"
    assert f"strategies: {blind}; multi_leg (buy legs dflow; sell legs jupiter; base mints: {SOL})" in lines
    (shown,) = [line for line in lines if line.startswith("wallet:")]
    assert shown.startswith(f"wallet: {wallet} (public key {keypair.pubkey()}, mode 0640")
    assert f"run `chmod 600 {wallet}`" in shown
    ups = lines[lines.index("upstreams the strategies use:") + 1 :]
    assert ups[0] == (
        "jupiter: keyed (JUPITER_API_KEY set here): the provider limits the key, so more IPs do not raise it; "
        "the key's budget learnt from its 429s, paced as one over every IP (rate_limit_per_key tells it)"
    )
    assert ups[1] == "dflow: per IP: each address adds its own limit; paced at 12.5 req/s per IP (rate_limit_per_ip)"
    assert ups[2] == (
        "jito: per IP per region (2 region(s)): each address adds its own limit; "
        "paced at 5 req/s per (IP, region) (rate_limit_per_ip)"
    )
    assert (
        ups[3]
        == "rpc: per IP: each address adds its own limit; learnt per IP from its 429s (rate_limit_per_ip tells it)"
    )


def test_a_told_key_budget_is_shown_with_the_key(tmp_path: Path) -> None:
    lines = check(
        tmp_path,
        f"""
upstreams:
  jupiter: {{base_url: 'https://api.jup.ag/swap/v1', api_key_env: JUPITER_API_KEY, rate_limit_per_key: 30}}
blind_strategy: {{enable: true, base_mints: [{{mint: {SOL}, trade_size_range: [1e9, 2e9]}}]}}
""",
        env={"JUPITER_API_KEY": "set-for-the-test"},
    )
    assert (
        "jupiter: keyed (JUPITER_API_KEY set here): the provider limits the key, so more IPs do not raise it; "
        "paced at 30 req/s for the key, shared by every IP (rate_limit_per_key)"
    ) in lines


def test_a_key_not_set_in_this_environment_is_said(tmp_path: Path) -> None:
    lines = check(
        tmp_path,
        f"blind_strategy: {{enable: true, base_mints: [{{mint: {SOL}, trade_size_range: [1e9, 2e9]}}]}}\n"
        "upstreams: {jito: {uuid_env: GALILEO_TEST_JITO_UUID}}\n",
    )
    assert (
        "jito: keyed (GALILEO_TEST_JITO_UUID NOT set here): the provider limits the key, so more IPs do not raise it; "
        "paced at 5 req/s per (IP, region) (rate_limit_per_ip)"
    ) in lines
    assert "wallet: none; the strategies sign with a throw-away key (dry run only)" in lines


TITAN = f"""
blind_strategy: {{base_mints: [{{mint: {SOL}, trade_size_range: [0.1e9, 2e9]}}]}}
multi_leg: {{enable: true, buy_legs: [titan], sell_legs: [jupiter]}}
"""


def test_titan_says_one_token_is_one_connection_on_one_ip(tmp_path: Path) -> None:
    one = check(tmp_path, TITAN, env={"TITAN_TOKEN": "x"})
    (line,) = [x for x in one if x.startswith("titan:")]
    assert line == (
        "titan: per token (TITAN_TOKEN set here): 1 token = 1 connection on 1 IP, streams multiplexed on it up to "
        "the server's concurrentStreams; more IPs do not raise it, more tokens (upstreams.titan.token_envs) do"
    )
    two = check(tmp_path, TITAN + "upstreams: {titan: {token_envs: [TITAN_A, TITAN_B]}}\n", env={"TITAN_A": "a"})
    (line,) = [x for x in two if x.startswith("titan:")]
    assert line.startswith(
        "titan: per token (TITAN_A set here, TITAN_B NOT set here): 2 tokens = 2 connections on 2 IPs"
    )


def test_titan_token_lists_are_checked_with_their_key_paths(tmp_path: Path) -> None:
    path = tmp_path / "galileo.yaml"
    path.write_text(TITAN + "upstreams: {titan: {token_env: T, token_envs: [A, B, A, 'not a name']}}\n")
    out = run_galileo("config", "check", str(path))
    assert out.returncode == 2
    assert "upstreams.titan.token_envs[3]: 'not a name' is not an environment variable name" in out.stderr
    path.write_text(TITAN + "upstreams: {titan: {token_env: T, token_envs: [A, B, A]}}\n")
    out = run_galileo("config", "check", str(path))
    assert out.returncode == 2
    assert "upstreams.titan.token_envs[2]: A is listed twice (one connection per token)" in out.stderr
    assert "upstreams.titan.token_env: give token_env or token_envs, not both" in out.stderr


def test_a_rate_per_key_without_a_key_is_refused_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "galileo.yaml"
    path.write_text("upstreams: {ultra: {base_url: 'https://api.jup.ag/ultra/v1', rate_limit_per_key: 30}}\n")
    out = run_galileo("config", "check", str(path))
    assert out.returncode == 2
    assert "upstreams.ultra.rate_limit_per_key: requires api_key_env in this section" in out.stderr
