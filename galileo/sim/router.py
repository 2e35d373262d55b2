"""The swap router every simulated aggregator program runs: a real BPF program, written in assembly.

The same binary is deployed at Jupiter's, DFlow's and Titan's program ids. A swap instruction
moves real SPL tokens, priced by the pool's reserves at the slot it executes in:

accounts (in order)::

    0 user            signer: authorises the input transfer
    1 user_src        writable: the user's token account of the input mint
    2 user_dst        writable: the user's token account of the output mint
    3 vault_in        writable: the router's vault of the input mint
    4 vault_out       writable: the router's vault of the output mint
    5 pool            the pool state the simulator writes each slot (owned by the DEX's program id)
    6 vault_authority the router's PDA ``["vault", bump]``: owner of every vault of this router
    7 token program   Tokenkeg...
    8..               anything else (DEX program, mints, event authority): not read

data: Jupiter's ``route`` layout (36 bytes: discriminator, a one-step route plan, ``in_amount``
u64 at 17, ``quoted_out_amount`` u64 at 25, ``slippage_bps`` u16 at 33, fee u8), or DFlow's and
Titan's (28 bytes: discriminator, ``in_amount`` u64 at 8, ``min_out`` u64 at 16, slippage, fee).

What it does: checks the accounts (signer, token program, pool magic, vault owners and mints,
the authority is this program's PDA), prices ``out = y·in' / (x + in')`` with ``in'`` the input
after the pool's fee (128-bit integer arithmetic, exactly as :func:`galileo.sim.pools.swap_out`),
fails with 6001 SlippageToleranceExceeded when ``out < min_out``, burns the pool's compute units
(a real route costs 100k+), then CPIs the token program twice: user → vault_in signed by the
user, vault_out → user signed by the PDA. Closed, empty or wrong accounts fail inside the token
program, as they would on mainnet.
"""

from __future__ import annotations

from functools import cache

from solders.pubkey import Pubkey

from galileo.sim.sbpf import Asm, elf_shared_object

__all__ = [
    "ERRORS",
    "JUPITER_DATA_LEN",
    "POOL_DATA_LEN",
    "POOL_MAGIC",
    "ROUTER_DATA_LEN",
    "VAULT_SEED",
    "router_elf",
    "vault_authority",
]

POOL_MAGIC = int.from_bytes(b"GSIMPOOL", "little")
POOL_DATA_LEN = 104  # magic, reserve_a, reserve_b, fee_ppm, burn_cu (u64 each), mint_a, mint_b
JUPITER_DATA_LEN = 36
ROUTER_DATA_LEN = 28
VAULT_SEED = b"vault"

ERRORS: dict[int, str] = {
    6001: "SlippageToleranceExceeded",
    6002: "InvalidCalculation",
    6004: "InvalidSlippage",
    6008: "NotEnoughAccountKeys",
    6010: "InvalidRoutePlan",
    6014: "IncorrectTokenProgramID",
    6018: "SourceAndDestinationMintCannotBeTheSame",
    6025: "InvalidTokenAccount",
}
"""The router's custom errors: Jupiter's numbers and names (its IDL), used for all three programs."""

_MISSING_SIGNATURE = 8 << 32  # the runtime's builtin MissingRequiredSignature
_TOKEN_PROGRAM = bytes(Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"))
_TOKEN_ACCOUNT_LEN = 165
_REALLOC_PAD = 10 * 1024  # MAX_PERMITTED_DATA_INCREASE after every account's data in the input

# Serialized input: per account dup u8, signer u8, writable u8, executable u8, 4 pad, key @8,
# owner @40, lamports @72, data_len @80, data @88 (+ 10 KiB, aligned to 8, then rent_epoch u64).
_KEY, _OWNER, _LAMPORTS, _DLEN, _DATA = 8, 40, 72, 80, 88

# Stack layout below r10 (the frame is 4 KiB).
_ACC = -64  # 8 account pointers
_IXD = -80  # token instruction data: tag + u64 (9 bytes)
_META = -128  # 3 SolAccountMeta {pubkey*, is_writable, is_signer} of 16 bytes
_INSN = -168  # SolInstruction {program_id*, accounts*, account_len, data*, data_len}
_INFO = -352  # 3 SolAccountInfo of 56 bytes
_SEEDB = -368  # "vault" at -368, bump at -360
_SEED = -400  # 2 SolSignerSeed {addr*, len}
_SEEDS = -416  # SolSignerSeeds {addr*, len}
_PDA = -448  # 32-byte address out of sol_try_find_program_address
_LOG = -640  # scratch for log text


def vault_authority(program: Pubkey) -> Pubkey:
    """The PDA that owns every vault of the router deployed at ``program``."""
    return Pubkey.find_program_address([VAULT_SEED], program)[0]


class _Router:
    def __init__(self) -> None:
        self.a = Asm()

    def acc(self, reg: int, index: int) -> None:
        self.a.load(8, reg, 10, _ACC + 8 * index)

    def fail(self, code: int) -> str:
        label = self.a.fresh(f"fail{code}")
        self.failures.append((label, code))
        return label

    def log(self, text: str) -> None:
        raw = text.encode()
        padded = raw.ljust((len(raw) + 3) // 4 * 4, b" ")
        for i in range(0, len(padded), 4):
            self.a.storei(4, 10, _LOG + i, int.from_bytes(padded[i : i + 4], "little", signed=True))
        self.a.mov(1, 10)
        self.a.alu("add", 1, imm=_LOG)
        self.a.movi(2, len(raw))
        self.a.syscall("sol_log_")

    def eq32(self, ra: int, off_a: int, rb: int, off_b: int, otherwise: str) -> None:
        """Jump to ``otherwise`` unless the 32 bytes at ra+off_a and rb+off_b are equal (uses r2, r3)."""
        for i in range(0, 32, 8):
            self.a.load(8, 2, ra, off_a + i)
            self.a.load(8, 3, rb, off_b + i)
            self.a.jump("jne", 2, otherwise, src=3)

    def eq_const(self, ra: int, off: int, value: bytes, otherwise: str) -> None:
        for i in range(0, 32, 8):
            self.a.load(8, 2, ra, off + i)
            self.a.movi(3, int.from_bytes(value[i : i + 8], "little"))
            self.a.jump("jne", 2, otherwise, src=3)

    def account_info(self, slot: int, index: int) -> None:
        """SolAccountInfo ``slot`` (0..2) from serialized account ``index`` (uses r2-r4)."""
        a, base = self.a, _INFO + 56 * slot
        self.acc(2, index)
        for field_off, src_off in ((0, _KEY), (8, _LAMPORTS), (24, _DATA), (32, _OWNER)):
            a.mov(3, 2)
            a.alu("add", 3, imm=src_off)
            a.store(8, 10, base + field_off, 3)
        a.load(8, 3, 2, _DLEN)
        a.store(8, 10, base + 8 * 2, 3)
        a.alu("add", 3, 2)  # rent_epoch sits after data + realloc pad, aligned to 8
        a.alu("add", 3, imm=_DATA + _REALLOC_PAD + 7)
        a.alu("and", 3, imm=-8)
        a.load(8, 3, 3, 0)
        a.store(8, 10, base + 40, 3)
        for i, flag in enumerate((1, 2, 3)):  # is_signer, is_writable, executable
            a.load(1, 3, 2, flag)
            a.store(1, 10, base + 48 + i, 3)

    def meta(self, slot: int, index: int, writable: int, signer: int) -> None:
        a = self.a
        self.acc(2, index)
        a.alu("add", 2, imm=_KEY)
        a.store(8, 10, _META + 16 * slot, 2)
        a.storei(1, 10, _META + 16 * slot + 8, writable)
        a.storei(1, 10, _META + 16 * slot + 9, signer)

    def transfer(self, amount_reg: int, source: int, dest: int, authority: int, signed: bool) -> None:
        """CPI token Transfer of ``amount_reg`` (the register is clobbered)."""
        a = self.a
        a.storei(1, 10, _IXD, 3)  # Transfer
        for i in range(8):  # u64 LE one byte at a time: the slot is not 8-aligned
            a.store(1, 10, _IXD + 1 + i, amount_reg)
            a.alu("rsh", amount_reg, imm=8)
        self.meta(0, source, 1, 0)
        self.meta(1, dest, 1, 0)
        self.meta(2, authority, 0, 1)
        self.acc(2, 7)
        a.alu("add", 2, imm=_KEY)
        a.store(8, 10, _INSN, 2)
        a.mov(2, 10)
        a.alu("add", 2, imm=_META)
        a.store(8, 10, _INSN + 8, 2)
        a.storei(8, 10, _INSN + 16, 3)
        a.mov(2, 10)
        a.alu("add", 2, imm=_IXD)
        a.store(8, 10, _INSN + 24, 2)
        a.storei(8, 10, _INSN + 32, 9)
        for slot, index in enumerate((source, dest, authority)):
            self.account_info(slot, index)
        a.mov(1, 10)
        a.alu("add", 1, imm=_INSN)
        a.mov(2, 10)
        a.alu("add", 2, imm=_INFO)
        a.movi(3, 3)
        if signed:
            a.mov(4, 10)
            a.alu("add", 4, imm=_SEEDS)
            a.movi(5, 1)
        else:
            a.movi(4, 0)
            a.movi(5, 0)
        a.syscall("sol_invoke_signed_c")
        a.jump("jne", 0, "return", imm=0)

    def mul128(self, x: int, y: int, hi: int, lo: int) -> None:
        """(hi, lo) = x * y, 128-bit (clobbers r1-r5; x, y, hi, lo must be among r6-r9, r0)."""
        a = self.a
        mask = 0xFFFF_FFFF
        a.movi(1, mask)
        a.mov(2, x)
        a.alu("and", 2, 1)  # x0
        a.mov(3, y)
        a.alu("and", 3, 1)  # y0
        a.mov(4, x)
        a.alu("rsh", 4, imm=32)  # x1
        a.mov(5, y)
        a.alu("rsh", 5, imm=32)  # y1
        # p00 = x0*y0 -> lo ; p01 = x0*y1 ; p10 = x1*y0 ; p11 = x1*y1 -> hi
        a.mov(lo, 2)
        a.alu("mul", lo, 3)
        a.alu("mul", 2, 5)  # r2 = p01
        a.alu("mul", 3, 4)  # r3 = p10
        a.mov(hi, 4)
        a.alu("mul", hi, 5)  # hi = p11
        a.mov(4, lo)
        a.alu("rsh", 4, imm=32)  # mid = p00 >> 32
        a.mov(5, 2)
        a.alu("and", 5, 1)
        a.alu("add", 4, 5)  # + (p01 & M)
        a.mov(5, 3)
        a.alu("and", 5, 1)
        a.alu("add", 4, 5)  # + (p10 & M)
        a.alu("and", lo, 1)
        a.mov(5, 4)
        a.alu("lsh", 5, imm=32)
        a.alu("or", lo, 5)
        a.alu("rsh", 2, imm=32)
        a.alu("add", hi, 2)
        a.alu("rsh", 3, imm=32)
        a.alu("add", hi, 3)
        a.alu("rsh", 4, imm=32)
        a.alu("add", hi, 4)

    def div128(self, hi: int, lo: int, d: int, q: int) -> None:
        """q = (hi:lo) / d for a quotient that fits 64 bits (hi < d); clobbers hi, lo, r1-r3."""
        a = self.a
        loop, sub, nosub = a.fresh("div"), a.fresh("sub"), a.fresh("nosub")
        a.movi(q, 0)
        a.movi(1, 64)
        a.label(loop)
        a.mov(2, hi)
        a.alu("rsh", 2, imm=63)  # carry out of rem << 1
        a.alu("lsh", hi, imm=1)
        a.mov(3, lo)
        a.alu("rsh", 3, imm=63)
        a.alu("or", hi, 3)
        a.alu("lsh", lo, imm=1)
        a.alu("lsh", q, imm=1)
        a.jump("jne", 2, sub, imm=0)
        a.jump("jlt", hi, nosub, src=d)
        a.label(sub)
        a.alu("sub", hi, d)
        a.alu("or", q, imm=1)
        a.label(nosub)
        a.alu("sub", 1, imm=1)
        a.jump("jne", 1, loop, imm=0)

    def mul_div_small(self, value: int, k: int, scale: int) -> None:
        """value = floor(value * k / scale) without overflow, for k <= scale < 2^31 (clobbers r1, r2)."""
        a = self.a
        a.mov(1, value)
        a.alu("mod", 1, imm=scale)
        a.alu("mul", 1, k)
        a.alu("div", 1, imm=scale)
        a.alu("div", value, imm=scale)
        a.alu("mul", value, k)
        a.alu("add", value, 1)

    def build(self) -> bytes:
        a = self.a
        self.failures: list[tuple[str, int]] = []
        a.mov(6, 1)  # r6 = input (the log call below takes r1 and r2)
        self.log("Instruction: Route")
        # Walk the serialized accounts, remembering the first eight.
        a.load(8, 7, 6, 0)  # r7 = number of accounts
        a.jump("jlt", 7, self.fail(6008), imm=8)
        a.mov(8, 6)
        a.alu("add", 8, imm=8)  # r8 = cursor
        a.movi(9, 0)  # r9 = index
        a.label("walk")
        a.jump("jge", 9, "walked", src=7)
        a.load(1, 2, 8, 0)
        a.jump("jne", 2, "duplicate", imm=0xFF)
        a.jump("jge", 9, "skip", imm=8)
        a.mov(3, 9)
        a.alu("lsh", 3, imm=3)
        a.alu("add", 3, 10)
        a.store(8, 3, _ACC, 8)
        a.label("skip")
        a.load(8, 2, 8, _DLEN)
        a.alu("add", 8, 2)
        a.alu("add", 8, imm=_DATA + _REALLOC_PAD + 7)
        a.alu("and", 8, imm=-8)
        a.alu("add", 8, imm=8)  # rent_epoch
        a.alu("add", 9, imm=1)
        a.goto("walk")
        a.label("duplicate")
        a.jump("jlt", 9, self.fail(6010), imm=8)  # the router's own accounts are all distinct
        a.alu("add", 8, imm=8)
        a.alu("add", 9, imm=1)
        a.goto("walk")
        a.label("walked")  # r8 -> instruction data length, then data, then program id
        a.load(8, 9, 8, 0)  # r9 = data length
        a.alu("add", 8, imm=8)  # r8 = data
        # The user signed.
        self.acc(6, 0)
        a.load(1, 2, 6, 1)
        a.jump("jeq", 2, "missing_signature", imm=0)
        # The token program is Tokenkeg, and both vaults are its accounts.
        self.acc(6, 7)
        self.eq_const(6, _KEY, _TOKEN_PROGRAM, self.fail(6014))
        for vault in (3, 4):
            self.acc(7, vault)
            self.eq32(7, _OWNER, 6, _KEY, self.fail(6025))
            a.load(8, 2, 7, _DLEN)
            a.jump("jne", 2, self.fail(6025), imm=_TOKEN_ACCOUNT_LEN)
        # The authority is this program's vault PDA, and it owns both vaults.
        a.storei(4, 10, _SEEDB, int.from_bytes(VAULT_SEED[:4], "little"))
        a.storei(1, 10, _SEEDB + 4, VAULT_SEED[4])
        a.mov(2, 10)
        a.alu("add", 2, imm=_SEEDB)
        a.store(8, 10, _SEED, 2)
        a.storei(8, 10, _SEED + 8, len(VAULT_SEED))
        a.mov(1, 10)
        a.alu("add", 1, imm=_SEED)
        a.movi(2, 1)
        a.mov(3, 8)
        a.alu("add", 3, 9)  # program id, right after the instruction data
        a.mov(4, 10)
        a.alu("add", 4, imm=_PDA)
        a.mov(5, 10)
        a.alu("add", 5, imm=_SEEDB + 8)  # the bump lands after the seed bytes
        a.syscall("sol_try_find_program_address")
        a.jump("jne", 0, self.fail(6010), imm=0)
        self.acc(6, 6)
        a.mov(7, 10)
        self.eq32(6, _KEY, 7, _PDA, self.fail(6010))
        for vault in (3, 4):
            self.acc(7, vault)
            self.eq32(7, _DATA + 32, 6, _KEY, self.fail(6025))
        # Signer seeds for the payout: [["vault", [bump]]].
        a.mov(2, 10)
        a.alu("add", 2, imm=_SEEDB + 8)
        a.store(8, 10, _SEED + 16, 2)
        a.storei(8, 10, _SEED + 24, 1)
        a.mov(2, 10)
        a.alu("add", 2, imm=_SEED)
        a.store(8, 10, _SEEDS, 2)
        a.storei(8, 10, _SEEDS + 8, 2)
        # The pool: its magic, and the direction its mints give the vaults.
        self.acc(6, 5)
        a.load(8, 2, 6, _DLEN)
        a.jump("jne", 2, self.fail(6010), imm=POOL_DATA_LEN)
        a.load(8, 2, 6, _DATA)
        a.movi(3, POOL_MAGIC)
        a.jump("jne", 2, self.fail(6010), src=3)
        self.acc(7, 3)
        self.eq32(7, _DATA, 6, _DATA + 40, "b_to_a")
        self.acc(7, 4)
        self.eq32(7, _DATA, 6, _DATA + 72, self.fail(6010))
        a.load(8, 6, 6, _DATA + 8)  # x = reserve_a
        self.acc(7, 5)
        a.load(8, 7, 7, _DATA + 16)  # y = reserve_b
        a.goto("priced")
        a.label("b_to_a")
        self.acc(7, 3)
        self.eq32(7, _DATA, 6, _DATA + 72, self.fail(6010))
        self.acc(7, 4)
        self.eq32(7, _DATA, 6, _DATA + 40, self.fail(6018))
        a.load(8, 7, 6, _DATA + 8)  # y = reserve_a
        a.load(8, 6, 6, _DATA + 16)  # x = reserve_b
        a.label("priced")  # r6 = x (input reserve), r7 = y (output reserve)
        a.store(8, 10, _LOG - 8, 6)
        a.store(8, 10, _LOG - 16, 7)
        # Amounts: r6 = in, r7 = min_out.
        a.jump("jeq", 9, "dflow_layout", imm=ROUTER_DATA_LEN)
        a.jump("jne", 9, self.fail(6010), imm=JUPITER_DATA_LEN)
        a.load(8, 6, 8, 17)
        a.load(8, 7, 8, 25)
        a.load(2, 9, 8, 33)
        a.jump("jgt", 9, self.fail(6004), imm=10_000)
        a.movi(2, 10_000)
        a.alu("sub", 2, 9)
        a.mov(9, 2)
        self.mul_div_small(7, 9, 10_000)  # min_out = quoted * (10000 - slippage) / 10000
        a.goto("amounts")
        a.label("dflow_layout")
        a.load(8, 6, 8, 8)
        a.load(8, 7, 8, 16)
        a.label("amounts")
        a.store(8, 10, _LOG - 24, 6)  # in
        a.store(8, 10, _LOG - 32, 7)  # min_out
        # in' = in - in * fee_ppm / 1e6
        self.acc(2, 5)
        a.load(8, 9, 2, _DATA + 24)
        a.mov(8, 6)
        self.mul_div_small(8, 9, 1_000_000)
        a.mov(9, 6)
        a.alu("sub", 9, 8)  # r9 = in'
        a.movi(2, 1 << 62)
        a.jump("jge", 9, self.fail(6002), src=2)
        a.load(8, 6, 10, _LOG - 16)  # y
        a.mov(7, 9)
        self.mul128(6, 7, 8, 0)  # (r8:r0) = y * in'
        a.load(8, 6, 10, _LOG - 8)  # x
        a.alu("add", 6, 9)  # d = x + in'
        a.mov(7, 0)
        self.div128(8, 7, 6, 9)  # r9 = out
        a.load(8, 2, 10, _LOG - 32)
        a.jump("jlt", 9, "slippage", src=2)
        a.store(8, 10, _LOG - 40, 9)
        # Burn the pool's compute units: two instructions, two units, per turn.
        self.acc(2, 5)
        a.load(8, 2, 2, _DATA + 32)
        a.alu("rsh", 2, imm=1)
        a.jump("jeq", 2, "burnt", imm=0)
        a.label("burn")
        a.alu("sub", 2, imm=1)
        a.jump("jne", 2, "burn", imm=0)
        a.label("burnt")
        a.load(8, 6, 10, _LOG - 24)
        self.transfer(6, source=1, dest=3, authority=0, signed=False)
        a.load(8, 6, 10, _LOG - 40)
        self.transfer(6, source=4, dest=2, authority=6, signed=True)
        a.movi(0, 0)
        a.label("return")
        a.exit()
        a.label("slippage")
        self.log(
            "AnchorError occurred. Error Code: SlippageToleranceExceeded. Error Number: 6001. "
            "Error Message: Slippage tolerance exceeded."
        )
        a.movi(0, 6001)
        a.exit()
        a.label("missing_signature")
        a.movi(0, _MISSING_SIGNATURE)
        a.exit()
        for label, code in self.failures:
            a.label(label)
            self.log(f"Error Number: {code}. Error Code: {ERRORS[code]}.")
            a.movi(0, code)
            a.exit()
        text, calls = a.assemble()
        return elf_shared_object(text, calls)


@cache
def router_elf() -> bytes:
    """The router program as the ELF the BPF loader takes (built once per process)."""
    return _Router().build()
