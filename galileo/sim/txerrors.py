"""Transaction errors as people and the RPC say them: labels for stats, messages for preflight.

The VM reports errors in the RPC's JSON shape (``{"InstructionError": [1, {"Custom": 6001}]}``,
``"InsufficientFundsForFee"`` ...). A label names the program and the error:
``jupiter: 6001 SlippageToleranceExceeded``, ``token: 1 InsufficientFunds``,
``jupiter → token: 1 InsufficientFunds`` (the router's transfer failed), ``InsufficientFundsForFee``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from solders.transaction import VersionedTransaction

from galileo.sim.router import ERRORS as ROUTER_ERRORS

__all__ = ["error_label", "preflight_message"]

_PROGRAMS = {
    "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4": "jupiter",
    "DF1ow4tspfHX9JwWJsAb9epbkA8hmpSEAtxXy1V27QBH": "dflow",
    "T1TANpTeScyeqVzzgNViGDNrkQ6qHz9KrSBS4aNXvGT": "titan",
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA": "token",
    "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL": "associated-token",
    "11111111111111111111111111111111": "system",
    "ComputeBudget111111111111111111111111111111": "compute-budget",
}
_ROUTERS = frozenset({"jupiter", "dflow", "titan"})
# spl-token's TokenError, in order.
_TOKEN_ERRORS = (
    "NotRentExempt",
    "InsufficientFunds",
    "InvalidMint",
    "MintMismatch",
    "OwnerMismatch",
    "FixedSupply",
    "AlreadyInUse",
    "InvalidNumberOfProvidedSigners",
    "InvalidNumberOfRequiredSigners",
    "UninitializedState",
    "NativeNotSupported",
    "NonNativeHasBalance",
    "InvalidInstruction",
    "InvalidState",
    "Overflow",
    "AuthorityTypeNotSupported",
    "MintCannotFreeze",
    "AccountFrozen",
    "MintDecimalsMismatch",
    "NonNativeNotSupported",
)
_SYSTEM_ERRORS = ("AccountAlreadyInUse", "ResultWithNegativeLamports", "InvalidProgramId", "InvalidAccountDataLength")


def _program(tx: VersionedTransaction | None, index: int) -> str:
    if tx is None:
        return "program"
    msg = tx.message
    try:
        program = str(msg.account_keys[msg.instructions[index].program_id_index])
    except IndexError:
        return "program"
    return _PROGRAMS.get(program, program)


def _custom_name(program: str, code: int) -> str:
    if program in _ROUTERS:
        return ROUTER_ERRORS.get(code, "")
    if program == "token" and code < len(_TOKEN_ERRORS):
        return _TOKEN_ERRORS[code]
    if program == "system" and code < len(_SYSTEM_ERRORS):
        return _SYSTEM_ERRORS[code]
    return ""


def _failed_program(logs: Sequence[str]) -> str | None:
    """The program that failed first (the innermost, for an error a CPI passed up), from the logs."""
    for line in logs:
        if line.startswith("Program ") and " failed: " in line:
            program = line.split(" ", 2)[1]
            return _PROGRAMS.get(program, program)
    return None


def error_label(err: Any, tx: VersionedTransaction | None = None, logs: Sequence[str] = ()) -> str:
    """A short, stable label of a transaction error (see the module doc).

    When the instruction's program failed because a program it called did (the router's token
    transfer, say), the label names both: ``jupiter → token: 1 InsufficientFunds``.
    """
    if isinstance(err, dict) and "InstructionError" in err:
        index, inner = err["InstructionError"]
        program = _program(tx, index)
        failed = _failed_program(logs) or program
        where = program if failed == program else f"{program} → {failed}"
        if isinstance(inner, dict) and "Custom" in inner:
            code = int(inner["Custom"])
            return f"{where}: {code} {_custom_name(failed, code)}".rstrip()
        return f"{where}: {inner if isinstance(inner, str) else next(iter(inner))}"
    if isinstance(err, dict):
        return str(next(iter(err)))
    return str(err)


# The runtime's Display text of the instruction errors a swap most often meets.
_DISPLAY = {
    "IncorrectProgramId": "incorrect program id for instruction",
    "InvalidAccountData": "invalid account data for instruction",
    "InsufficientFunds": "insufficient funds for instruction",
    "ProgramFailedToComplete": "Program failed to complete",
    "ComputationalBudgetExceeded": "Computational budget exceeded",
    "MissingRequiredSignature": "missing required signature for instruction",
    "UninitializedAccount": "instruction requires an initialized account",
}


def preflight_message(err: Any) -> str:
    """The RPC's ``Transaction simulation failed: ...`` message for ``err``."""
    if isinstance(err, dict) and "InstructionError" in err:
        index, inner = err["InstructionError"]
        if isinstance(inner, dict) and "Custom" in inner:
            what = f"custom program error: {int(inner['Custom']):#x}"
        else:
            name = inner if isinstance(inner, str) else str(next(iter(inner)))
            what = _DISPLAY.get(name, name)
        return f"Transaction simulation failed: Error processing Instruction {index}: {what}"
    return f"Transaction simulation failed: {error_label(err)}"
