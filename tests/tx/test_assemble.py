"""Assembly on an in-memory farm: the limit measured by simulation, refusals with a reason to act on."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.transaction import VersionedTransaction

from broker.jobs import RpcGetMultipleAccounts, RpcLatestBlockhash, RpcSimulateTransaction
from broker.results import Blockhash, ResultValue, Simulation
from broker.solana import AccountMeta, Instruction
from broker.types import JobOutcome, JobSpec
from galileo.chain import ChainState
from galileo.config import parse_config
from galileo.config.sections import LanderConfig
from galileo.landing import Assembled, SimulationFailed, assemble
from galileo.tx import NeedsOtherSigner, RouteTooLarge, SwapLeg, budget
from galileo.tx.decompile import decompile
from galileo.tx.tip import JITO_TIP_ACCOUNTS
from galileo.upstreams import Upstreams
from tests.fakefarm import FakeFarm
from tests.tx.shapes import dflow_leg, jupiter_leg, key

BLOCKHASH = str(Hash(bytes(range(32))))
CFG = parse_config("upstreams: {rpc: {urls: ['http://127.0.0.1:9/rpc']}}")


def chain_answering(simulation: Simulation | None, seen: list[bytes]) -> ChainState:
    def answer(spec: JobSpec, ip: str) -> ResultValue | JobOutcome | None:
        job = spec.payload
        if isinstance(job, RpcLatestBlockhash):
            return Blockhash(blockhash=BLOCKHASH, last_valid_block_height=500, slot=9)
        if isinstance(job, RpcSimulateTransaction):
            seen.append(job.transaction)
            if simulation is None:
                return JobOutcome(job_id=1, result="rate_limited", task=spec.task, upstream=spec.upstream)
            return simulation
        assert not isinstance(job, RpcGetMultipleAccounts), "no lookup table in these legs"
        return None

    farm = FakeFarm(["127.0.0.2"], answer=answer)
    return ChainState(farm, Upstreams(CFG))


def legs(owner: str, pools: int = 3) -> list[SwapLeg]:
    jup = jupiter_leg(owner, pools=pools)
    dflow = dflow_leg(owner, pools=pools)
    return [
        SwapLeg(**{**{f: getattr(jup, f) for f in jup.__struct_fields__}, "alts": (), "label": "jupiter"}),
        SwapLeg(**{**{f: getattr(dflow, f) for f in dflow.__struct_fields__}, "alts": (), "label": "dflow"}),
    ]


def run(coro: Coroutine[Any, Any, Assembled]) -> Assembled:
    return asyncio.run(coro)


def limit_of(message: object) -> int:
    assert isinstance(message, MessageV0)
    data = bytes(message.instructions[0].data)
    return budget.decode_compute_unit_limit(data)


def test_the_limit_is_the_simulated_units_times_the_margin_for_both_variants() -> None:
    wallet, seen = Keypair(), []
    chain = chain_answering(Simulation(slot=9, units_consumed=211_892), seen)
    lander = LanderConfig(tip_lamports=10_000, compute_unit_price_micro_lamports=1_000)
    tx = run(assemble(legs(str(wallet.pubkey())), chain, wallet, lander, jito=True, rpc=True, rng=random.Random(3)))
    assert tx.units_consumed == 211_892 and tx.compute_unit_limit == 233_082  # ceil(211 892 x 1.1)
    assert tx.jito is not None and tx.rpc is not None
    assert limit_of(tx.jito.message) == limit_of(tx.rpc.message) == 233_082
    assert tx.priority_fee == 234  # ceil(233 082 x 1 000 / 10^6): charged on the limit, not on the 1.4M probe
    # One simulation, of a probe carrying both the tip and the price at the most compute there is.
    (probe,) = seen
    probe_message = VersionedTransaction.from_bytes(probe).message
    assert limit_of(probe_message) == budget.MAX_COMPUTE_UNIT_LIMIT
    assert set(JITO_TIP_ACCOUNTS) & {str(k) for k in probe_message.account_keys}  # the tip is in it ...
    assert any(budget.is_compute_unit_price(ix) for ix in decompile(probe_message, []))  # ... and the price


def test_without_a_simulation_the_limit_is_the_legs_own() -> None:
    wallet = Keypair()
    chain = chain_answering(None, [])
    lander = LanderConfig(tip_lamports=10_000)
    tx = run(assemble(legs(str(wallet.pubkey())), chain, wallet, lander, jito=True, rpc=False, rng=random.Random(3)))
    assert tx.units_consumed is None and tx.compute_unit_limit == 500_000  # 300k (Jupiter) + 200k (DFlow)
    assert tx.jito is not None and limit_of(tx.jito.message) == 500_000


def test_a_transaction_that_fails_in_simulation_is_not_signed_for_landing() -> None:
    wallet = Keypair()
    failing = Simulation(slot=9, units_consumed=90_000, err='{"InstructionError":[6,{"Custom":6001}]}', logs=["x"])
    chain = chain_answering(failing, [])
    with pytest.raises(SimulationFailed) as info:
        run(
            assemble(
                legs(str(wallet.pubkey())), chain, wallet, LanderConfig(), jito=True, rpc=False, rng=random.Random()
            )
        )
    assert info.value.result == "simulation: Custom 6001" and info.value.market  # a price that moved
    broken = Simulation(slot=9, err='{"InstructionError":[3,"InvalidAccountData"]}')
    with pytest.raises(SimulationFailed) as info:
        run(
            assemble(
                legs(str(wallet.pubkey())),
                chain_answering(broken, []),
                wallet,
                LanderConfig(),
                jito=True,
                rpc=False,
                rng=random.Random(),
            )
        )
    assert info.value.result == "simulation: InvalidAccountData" and not info.value.market  # a build bug


def test_legs_too_big_for_one_transaction_say_which_and_what_to_change() -> None:
    wallet = Keypair()
    chain = chain_answering(Simulation(slot=9, units_consumed=1), [])
    big = legs(str(wallet.pubkey()), pools=30)  # no lookup tables: every pool a static key
    with pytest.raises(RouteTooLarge) as info:
        run(assemble(big, chain, wallet, LanderConfig(), jito=True, rpc=False, rng=random.Random()))
    text = str(info.value)
    assert text.startswith("the round trip would lock 73 accounts, over the runtime's limit of 64")
    assert "buy jupiter names 40, sell dflow names 38" in text and "Lower blind_strategy.max_accounts" in text


def test_a_leg_needing_a_second_signer_is_refused_before_anything_is_signed() -> None:
    wallet = Keypair()
    seen: list[bytes] = []
    chain = chain_answering(Simulation(slot=9, units_consumed=1), seen)
    signers = (AccountMeta(str(wallet.pubkey()), True, True), AccountMeta(key("maker"), True, False))
    rfq = SwapLeg(swap=(Instruction(key("rfq"), signers, b""),), label="ultra")
    with pytest.raises(NeedsOtherSigner, match="ultra needs"):
        run(assemble([rfq], chain, wallet, LanderConfig(), jito=True, rpc=False, rng=random.Random()))
    assert seen == []
