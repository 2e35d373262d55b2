"""Jupiter Swap v1 and DFlow clients: quote → swap-instructions against the simulator, shapes, errors."""

from __future__ import annotations

import struct
from pathlib import Path

import orjson
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from broker.jobs import DflowQuote, DflowSwapInstructions, JupiterQuote, JupiterSwapInstructions
from broker.results import Quote, SwapInstructions
from broker.solana import AccountMeta, Instruction
from galileo.sim import SimServer
from tests.clients.conftest import SOL, USDC, USER, Stub, Worker, control

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference"
CLOSE_ACCOUNT = b"\x09"
LABELS = {"Raydium CLMM", "Whirlpool", "Meteora DLMM"}


def jup(sim: SimServer) -> str:
    return sim.url + "/jupiter/swap/v1"


async def test_jupiter_quote_is_echoed_into_swap_instructions(sim: SimServer, worker: Worker) -> None:
    quoted = await worker.run(
        JupiterQuote(base_url=jup(sim), input_mint=SOL, output_mint=USDC, amount=1_000_000_000, slippage_bps=50)
    )
    assert quoted.outcome.result == "ok", quoted.outcome
    q = quoted.outcome.value
    assert isinstance(q, Quote)
    assert q.in_amount == 1_000_000_000 and q.out_amount > 0 and q.slippage_bps == 50
    assert q.other_amount_threshold == q.out_amount * 9950 // 10000
    assert q.context_slot > 0 and q.swap_mode == "ExactIn" and len(q.route) == 1 and q.route[0] in LABELS
    assert b"mostReliableAmmsQuoteReport" in q.raw  # undocumented fields tolerated and kept verbatim
    assert quoted.outcome.status == 200 and quoted.outcome.latency > 0

    user = Keypair().pubkey()
    built = await worker.run(
        JupiterSwapInstructions(
            base_url=jup(sim),
            user_public_key=str(user),
            quote=q.raw,
            wrap_and_unwrap_sol=True,
            dynamic_compute_unit_limit=True,
            compute_unit_price_micro_lamports=1000,
        )
    )
    assert built.outcome.result == "ok", built.outcome
    s = built.outcome.value
    assert isinstance(s, SwapInstructions)
    assert s.swap.program_id == "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
    # the route's tail carries the quoted amounts: the sim built it from the quote we echoed
    assert struct.unpack("<QQHB", s.swap.data[-19:]) == (q.in_amount, q.out_amount, 50, 0)
    assert AccountMeta(str(user), True, False) in s.swap.accounts
    assert [ix.data[:1] for ix in s.compute_budget] == [b"\x02", b"\x03"]
    assert s.compute_unit_limit == struct.unpack("<I", s.compute_budget[0].data[1:5])[0] < 1_400_000
    assert len(s.setup) == 4  # WSOL ATA, transfer, sync, USDC ATA
    assert [ix.data for ix in s.cleanup] == [CLOSE_ACCOUNT]  # singular cleanupInstruction → a list of one
    assert s.alts and all(Pubkey.from_string(a) for a in s.alts)
    # Jupiter sends the blockhash as 32 ints; it comes out base58, one the chain issued
    assert sim.state.ledger.issued[s.blockhash] == s.last_valid_block_height


async def test_dflow_quote_is_echoed_into_swap_instructions(sim: SimServer, worker: Worker) -> None:
    quoted = await worker.run(
        DflowQuote(base_url=sim.url + "/dflow", input_mint=SOL, output_mint=USDC, amount=500_000_000, slippage_bps=30)
    )
    assert quoted.outcome.result == "ok", quoted.outcome
    q = quoted.outcome.value
    assert isinstance(q, Quote)
    assert q.in_amount == 500_000_000 and q.other_amount_threshold == q.out_amount * 9970 // 10000
    assert q.request_id and q.route[0] in {"Raydium CLMM", "Orca Whirlpool", "Meteora DLMM"}
    built = await worker.run(
        DflowSwapInstructions(
            base_url=sim.url + "/dflow",
            user_public_key=USER,
            quote=q.raw,
            wrap_and_unwrap_sol=True,
            prioritization_fee_lamports=10_000,
        )
    )
    assert built.outcome.result == "ok", built.outcome
    s = built.outcome.value
    assert isinstance(s, SwapInstructions)
    assert s.swap.program_id == "DF1ow4tspfHX9JwWJsAb9epbkA8hmpSEAtxXy1V27QBH"
    assert struct.unpack("<QQHH", s.swap.data[-20:]) == (q.in_amount, q.other_amount_threshold, 30, 0)
    assert [ix.data for ix in s.cleanup] == [CLOSE_ACCOUNT]  # plural cleanupInstructions
    assert s.compute_unit_limit == struct.unpack("<I", s.compute_budget[0].data[1:5])[0]
    assert s.prioritization_fee_lamports == 10_000
    assert sim.state.ledger.issued[s.blockhash] == s.last_valid_block_height  # base58 as sent


async def test_quote_parameters_reach_the_upstream(sim: SimServer, worker: Worker) -> None:
    only = await worker.run(
        JupiterQuote(base_url=jup(sim), input_mint=SOL, output_mint=USDC, amount=10**9, dexes=["Whirlpool"])
    )
    assert isinstance(only.outcome.value, Quote) and only.outcome.value.route == ["Whirlpool"]
    exact_out = await worker.run(
        JupiterQuote(
            base_url=jup(sim), input_mint=SOL, output_mint=USDC, amount=5_000_000, swap_mode="ExactOut", slippage_bps=0
        )
    )
    q = exact_out.outcome.value
    assert isinstance(q, Quote) and q.swap_mode == "ExactOut" and q.out_amount == 5_000_000
    none = await worker.run(
        JupiterQuote(base_url=jup(sim), input_mint=SOL, output_mint=USDC, amount=10**9, exclude_dexes=sorted(LABELS))
    )
    assert none.outcome.result == "http_error" and "COULD_NOT_FIND_ANY_ROUTE" in none.outcome.error


async def test_unknown_mint_is_a_no_route_error(sim: SimServer, worker: Worker) -> None:
    mint = str(Keypair().pubkey())
    j = await worker.run(JupiterQuote(base_url=jup(sim), input_mint=SOL, output_mint=mint, amount=10**9))
    assert (j.outcome.result, j.outcome.status) == ("http_error", 400)
    assert "COULD_NOT_FIND_ANY_ROUTE: Could not find any route" in j.outcome.error and j.outcome.value is None
    d = await worker.run(DflowQuote(base_url=sim.url + "/dflow", input_mint=SOL, output_mint=mint, amount=10**9))
    assert (d.outcome.result, d.outcome.status) == ("http_error", 400)
    assert "route_not_found: No route found" in d.outcome.error


async def test_a_rate_limited_ip_does_not_limit_another(sim: SimServer, worker: Worker) -> None:
    await control(sim, {"ip_overrides": {"127.0.0.3": {"status": 429, "retry_after": 2, "services": ["jupiter"]}}})
    job = JupiterQuote(base_url=jup(sim), input_mint=SOL, output_mint=USDC, amount=10**9)
    limited = await worker.run(job, ip="127.0.0.3")
    assert (limited.outcome.result, limited.outcome.status, limited.outcome.retry_after) == ("rate_limited", 429, 2.0)
    assert (await worker.run(job, ip="127.0.0.2")).outcome.result == "ok"
    dflow = DflowQuote(base_url=sim.url + "/dflow", input_mint=SOL, output_mint=USDC, amount=10**9)
    assert (await worker.run(dflow, ip="127.0.0.3")).outcome.result == "ok"  # only jupiter was limited


async def test_server_errors_and_malformed_bodies(sim: SimServer, worker: Worker) -> None:
    job = JupiterQuote(base_url=jup(sim), input_mint=SOL, output_mint=USDC, amount=10**9)
    await control(sim, {"faults": {"5xx": 1.0}})
    down = await worker.run(job)
    assert (down.outcome.result, down.outcome.status) == ("http_error", 503)
    dflow = await worker.run(DflowQuote(base_url=sim.url + "/dflow", input_mint=SOL, output_mint=USDC, amount=10**9))
    assert dflow.outcome.status == 503 and "service_unavailable" in dflow.outcome.error
    await control(sim, {"faults": {"malformed": 1.0}})
    broken = await worker.run(job)
    assert broken.outcome.result == "decode_error" and "jupiter /quote" in broken.outcome.error


async def test_real_jupiter_payloads_decode_field_by_field(stub: Stub, worker: Worker) -> None:
    quote_body = (REFERENCE / "jupiter_quote.json").read_bytes()
    stub.answer("/quote", quote_body)
    out = (
        await worker.run(JupiterQuote(base_url=stub.url, input_mint=USDC, output_mint=SOL, amount=1_000_000))
    ).outcome
    assert out.value == Quote(
        in_amount=1_000_000,
        out_amount=5_206_073,
        other_amount_threshold=5_206_073,
        slippage_bps=0,
        price_impact_pct=0.0004220978192495882607039257,
        swap_mode="ExactIn",
        context_slot=376_435_416,
        route=["HumidiFi"],
        raw=quote_body,
    )
    assert stub.seen[0].query == {"inputMint": USDC, "outputMint": SOL, "amount": "1000000"}

    swap_body = (REFERENCE / "jupiter_swap_instructions.json").read_bytes()
    stub.answer("/swap-instructions", swap_body)
    out = (
        await worker.run(
            JupiterSwapInstructions(base_url=stub.url, user_public_key=USER, quote=quote_body, jito_tip_lamports=2444)
        )
    ).outcome
    s = out.value
    assert isinstance(s, SwapInstructions), out
    hash_ints = orjson.loads(swap_body)["blockhashWithMetadata"]["blockhash"]
    assert s.blockhash == str(Hash(bytes(hash_ints))) and s.last_valid_block_height == 354_592_018
    assert s.compute_unit_limit == 1_400_000 and s.compute_budget[0].data == b"\x02\xc0\x5c\x15\x00"
    assert s.cleanup == [
        Instruction(
            "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
            (
                AccountMeta("FkHuP6FSfa8x1WY43U224RU7d9yLodB3XEeNAytX68ZB", False, True),
                AccountMeta(USER, False, True),
                AccountMeta(USER, True, False),
            ),
            CLOSE_ACCOUNT,
        )
    ]
    assert s.alts == ["9AKCoNoAGYLW71TwTHY9e7KrZUWWL3c7VtHKb66NT3EV"] and s.other == []
    sent = orjson.loads(stub.seen[1].body)
    assert quote_body in stub.seen[1].body  # quoteResponse is the quote's bytes, verbatim
    assert sent["userPublicKey"] == USER and sent["prioritizationFeeLamports"] == {"jitoTipLamports": 2444}
    assert "wrapAndUnwrapSol" not in sent  # unset options are left to the upstream's default


async def test_missing_or_bad_fields_are_decode_errors_naming_the_field(stub: Stub, worker: Worker) -> None:
    quote = orjson.loads((REFERENCE / "jupiter_quote.json").read_bytes())
    del quote["outAmount"]
    stub.answer("/quote", orjson.dumps(quote))
    out = (await worker.run(JupiterQuote(base_url=stub.url, input_mint=USDC, output_mint=SOL, amount=1))).outcome
    assert out.result == "decode_error" and "`outAmount`" in out.error

    swap = orjson.loads((REFERENCE / "jupiter_swap_instructions.json").read_bytes())
    swap["blockhashWithMetadata"]["blockhash"] = swap["blockhashWithMetadata"]["blockhash"][:31]
    stub.answer("/j/swap-instructions", orjson.dumps(swap))
    out = (
        await worker.run(JupiterSwapInstructions(base_url=stub.url + "/j", user_public_key=USER, quote=b"{}"))
    ).outcome
    assert out.result == "decode_error" and "blockhash" in out.error

    dflow_swap = {
        "computeBudgetInstructions": [],
        "setupInstructions": [],
        "swapInstruction": swap["swapInstruction"],
        "addressLookupTableAddresses": [],
        "blockhashWithMetadata": {
            "blockhash": "EkSnNWid2cvwEVnVx9aBqawnmiCNiDgp3gUdkDPTKN1N",
            "lastValidBlockHeight": 3,
        },
    }
    stub.answer("/d/swap-instructions", orjson.dumps(dflow_swap))
    job = DflowSwapInstructions(base_url=stub.url + "/d", user_public_key=USER, quote=b"{}")
    out = (await worker.run(job)).outcome
    assert out.result == "decode_error" and "`computeUnitLimit`" in out.error  # DFlow always sends it
    stub.answer("/d/swap-instructions", orjson.dumps({**dflow_swap, "computeUnitLimit": 250_000}))
    s = (await worker.run(job)).outcome.value
    assert isinstance(s, SwapInstructions) and s.blockhash == "EkSnNWid2cvwEVnVx9aBqawnmiCNiDgp3gUdkDPTKN1N"
    assert s.cleanup == [] and s.compute_unit_limit == 250_000

    dflow_quote = (REFERENCE / "dflow_quote.json").read_bytes()
    stub.answer("/d/quote", dflow_quote)
    q = (await worker.run(DflowQuote(base_url=stub.url + "/d", input_mint=SOL, output_mint=USDC, amount=1))).outcome
    assert isinstance(q.value, Quote)
    assert (q.value.out_amount, q.value.other_amount_threshold, q.value.route) == (9_669_517, 9_621_170, ["Tessera V"])
    assert q.value.request_id == "5717c400-dbf2-41b0-800c-27879d3a8e13" and q.value.context_slot == 441_429_266


async def test_a_non_json_error_page_and_a_bad_quote_argument(stub: Stub, worker: Worker) -> None:
    stub.answer("/quote", "<html>Bad Gateway</html>", status=502)
    out = (await worker.run(JupiterQuote(base_url=stub.url, input_mint=SOL, output_mint=USDC, amount=1))).outcome
    assert (out.result, out.status) == ("http_error", 502) and "Bad Gateway" in out.error
    stub.answer("/quote", "", status=302, headers={"Location": "https://elsewhere.example/quote"})
    out = (await worker.run(JupiterQuote(base_url=stub.url, input_mint=SOL, output_mint=USDC, amount=1))).outcome
    assert (out.result, out.status) == ("http_error", 302) and "elsewhere.example" in out.error
    stub.answer("/quote", '{"error":"Too Many Requests"}', status=429, headers={"Retry-After": "3"})
    out = (await worker.run(JupiterQuote(base_url=stub.url, input_mint=SOL, output_mint=USDC, amount=1))).outcome
    assert (out.result, out.retry_after) == ("rate_limited", 3.0)
    seen = len(stub.seen)
    out = (
        await worker.run(JupiterSwapInstructions(base_url=stub.url, user_public_key=USER, quote=b"not json"))
    ).outcome
    assert out.result == "decode_error" and "Quote.raw" in out.error and len(stub.seen) == seen
