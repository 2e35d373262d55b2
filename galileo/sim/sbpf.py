"""A tiny sBPF (v0) assembler and ELF writer, so the simulator can load a program it wrote itself.

LiteSVM runs real BPF programs but the simulator has no Solana toolchain, so its swap router
(:mod:`galileo.sim.router`) is written here in assembly and linked into the shared object the
BPF loader expects: one ``.text`` section, a dynamic symbol table naming the syscalls, and one
``R_BPF_64_32`` relocation per syscall call, which the loader replaces by the syscall's hash.

Only what the router needs is here: 64-bit ALU, loads and stores, jumps to labels and syscalls.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["Asm", "elf_shared_object"]

# Instruction classes and fields of the (s)BPF encoding: opcode u8, dst:4 | src:4, offset i16, imm i32.
_ALU = {"add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "or": 0x40, "and": 0x50, "lsh": 0x60}
_ALU |= {"rsh": 0x70, "mod": 0x90, "xor": 0xA0, "mov": 0xB0}
_JMP = {"jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50, "jlt": 0xA0, "jle": 0xB0}
_SIZE = {8: 0x18, 4: 0x00, 2: 0x08, 1: 0x10}  # dw, w, h, b
_ALU64, _JMP64, _LDX, _STX, _ST = 0x07, 0x05, 0x01, 0x03, 0x02
_CALL, _EXIT = 0x85, 0x95


@dataclass
class Asm:
    """Instructions in order, with labels; ``assemble`` resolves jumps and lists syscall sites."""

    code: list[tuple[int, int, int, int, int | str]] = field(default_factory=list)  # op, dst, src, off|label, imm
    labels: dict[str, int] = field(default_factory=dict)
    jumps: dict[int, str] = field(default_factory=dict)  # slot -> label
    calls: dict[int, str] = field(default_factory=dict)  # slot -> syscall name
    _unique: int = 0

    def fresh(self, stem: str) -> str:
        """A label name not used before."""
        self._unique += 1
        return f"{stem}.{self._unique}"

    def label(self, name: str) -> None:
        """Put ``name`` at the next instruction."""
        if name in self.labels:
            raise ValueError(f"label {name!r} defined twice")
        self.labels[name] = len(self.code)

    def _emit(self, op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int | str = 0) -> None:
        self.code.append((op, dst, src, off, imm))

    def alu(self, name: str, dst: int, src: int | None = None, imm: int = 0) -> None:
        """``dst = dst <name> src`` (register) or ``dst = dst <name> imm`` (64-bit)."""
        if src is None:
            self._emit(_ALU64 | _ALU[name], dst, 0, 0, imm)
        else:
            self._emit(_ALU64 | _ALU[name] | 0x08, dst, src)

    def mov(self, dst: int, src: int) -> None:
        """``dst = src``."""
        self.alu("mov", dst, src)

    def movi(self, dst: int, value: int) -> None:
        """``dst = value``: one instruction for a signed 32-bit value, else ``lddw``."""
        if -(2**31) <= value < 2**31:
            self.alu("mov", dst, imm=value)
        else:
            value &= 2**64 - 1
            self._emit(0x18, dst, 0, 0, value & 0xFFFF_FFFF)
            self._emit(0x00, 0, 0, 0, value >> 32)

    def load(self, size: int, dst: int, base: int, off: int) -> None:
        """``dst = *(u<size*8> *)(base + off)``."""
        self._emit(_LDX | 0x60 | _SIZE[size], dst, base, off)

    def store(self, size: int, base: int, off: int, src: int) -> None:
        """``*(u<size*8> *)(base + off) = src``."""
        self._emit(_STX | 0x60 | _SIZE[size], base, src, off)

    def storei(self, size: int, base: int, off: int, imm: int) -> None:
        """``*(u<size*8> *)(base + off) = imm`` (imm sign-extended from 32 bits)."""
        self._emit(_ST | 0x60 | _SIZE[size], base, 0, off, imm)

    def jump(self, name: str, dst: int, target: str, src: int | None = None, imm: int = 0) -> None:
        """Conditional jump to ``target`` comparing ``dst`` with ``src`` or ``imm`` (unsigned)."""
        self.jumps[len(self.code)] = target
        if src is None:
            self._emit(_JMP64 | _JMP[name], dst, 0, 0, imm)
        else:
            self._emit(_JMP64 | _JMP[name] | 0x08, dst, src)

    def goto(self, target: str) -> None:
        """Unconditional jump to ``target``."""
        self.jumps[len(self.code)] = target
        self._emit(_JMP64)

    def syscall(self, name: str) -> None:
        """Call a runtime syscall (``sol_log_``, ``sol_invoke_signed_c`` ...): args in r1-r5, result in r0."""
        self.calls[len(self.code)] = name
        self._emit(_CALL, 0, 0, 0, -1)

    def exit(self) -> None:
        """Return r0 to the runtime (0 = success, else the program error)."""
        self._emit(_EXIT)

    def assemble(self) -> tuple[bytes, dict[int, str]]:
        """(the .text bytes, syscall name by byte offset in .text)."""
        out = bytearray()
        for slot, (op, dst, src, off, imm) in enumerate(self.code):
            if slot in self.jumps:
                target = self.labels.get(self.jumps[slot])
                if target is None:
                    raise ValueError(f"undefined label {self.jumps[slot]!r}")
                off = target - slot - 1
            out += struct.pack("<BBhI", op, (src << 4) | dst, off, (imm if isinstance(imm, int) else 0) & 0xFFFF_FFFF)
        return bytes(out), {slot * 8: name for slot, name in self.calls.items()}


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")
_DYN = struct.Struct("<qQ")
_EM_BPF, _ET_DYN = 247, 3
_PT_LOAD, _PT_DYNAMIC = 1, 2
_SHT_PROGBITS, _SHT_STRTAB, _SHT_DYNAMIC, _SHT_DYNSYM, _SHT_REL = 1, 3, 6, 11, 9
_SHF_ALLOC, _SHF_EXEC, _SHF_WRITE = 0x2, 0x4, 0x1
_DT_NULL, _DT_STRTAB, _DT_SYMTAB, _DT_STRSZ, _DT_SYMENT = 0, 5, 6, 10, 11
_DT_REL, _DT_RELSZ, _DT_RELENT = 17, 18, 19
_R_BPF_64_32 = 10  # the loader reads relocation types with x86-64 numbering: R_X86_64_32


def _align(n: int, to: int = 8) -> int:
    return (n + to - 1) // to * to


def elf_shared_object(text: bytes, syscalls: dict[int, str]) -> bytes:
    """An ``ET_DYN`` ELF for the BPF loader: ``.text`` at its own file offset (the entrypoint is
    its first instruction), syscalls resolved through ``.dynsym`` + ``.rel.dyn``.

    Every section's address equals its file offset, which the loader requires.
    """
    names = sorted(set(syscalls.values()))
    dynstr = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    name_at = {n: dynstr.index(b"\0" + n.encode() + b"\0") + 1 for n in names}
    sym_index = {n: i + 1 for i, n in enumerate(names)}
    dynsym = bytes(_SYM.size) + b"".join(_SYM.pack(name_at[n], 0x10, 0, 0, 0, 0) for n in names)  # GLOBAL NOTYPE

    text_off = _align(_EHDR.size + 3 * _PHDR.size, 16)
    dynamic_off = _align(text_off + len(text))
    n_dyn = 9
    dynsym_off = dynamic_off + n_dyn * _DYN.size
    dynstr_off = dynsym_off + len(dynsym)
    rel_off = _align(dynstr_off + len(dynstr))
    rel = b"".join(_REL.pack(text_off + at, (sym_index[n] << 32) | _R_BPF_64_32) for at, n in sorted(syscalls.items()))
    dynamic = b"".join(
        _DYN.pack(tag, value)
        for tag, value in (
            (_DT_SYMTAB, dynsym_off),
            (_DT_STRTAB, dynstr_off),
            (_DT_STRSZ, len(dynstr)),
            (_DT_SYMENT, _SYM.size),
            *(((_DT_REL, rel_off), (_DT_RELSZ, len(rel)), (_DT_RELENT, _REL.size)) if rel else ()),
            (_DT_NULL, 0),
        )
    ).ljust(n_dyn * _DYN.size, b"\0")
    shstr_names = ["", ".text", ".dynamic", ".dynsym", ".dynstr", ".rel.dyn", ".shstrtab"]
    shstrtab = b"\0".join(n.encode() for n in shstr_names) + b"\0"
    shname = {n: shstrtab.index(n.encode() + b"\0") if n else 0 for n in shstr_names}
    shstr_off = rel_off + len(rel)
    sh_off = _align(shstr_off + len(shstrtab))
    end_loaded = rel_off + len(rel)

    sections = [
        _SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        _SHDR.pack(shname[".text"], _SHT_PROGBITS, _SHF_ALLOC | _SHF_EXEC, text_off, text_off, len(text), 0, 0, 8, 0),
        _SHDR.pack(
            shname[".dynamic"],
            _SHT_DYNAMIC,
            _SHF_ALLOC | _SHF_WRITE,
            dynamic_off,
            dynamic_off,
            len(dynamic),
            4,
            0,
            8,
            _DYN.size,
        ),
        _SHDR.pack(shname[".dynsym"], _SHT_DYNSYM, _SHF_ALLOC, dynsym_off, dynsym_off, len(dynsym), 4, 1, 8, _SYM.size),
        _SHDR.pack(shname[".dynstr"], _SHT_STRTAB, _SHF_ALLOC, dynstr_off, dynstr_off, len(dynstr), 0, 0, 1, 0),
        _SHDR.pack(shname[".rel.dyn"], _SHT_REL, _SHF_ALLOC, rel_off, rel_off, len(rel), 3, 0, 8, _REL.size),
        _SHDR.pack(shname[".shstrtab"], _SHT_STRTAB, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0),
    ]
    phdrs = [
        _PHDR.pack(_PT_LOAD, 0x5, text_off, text_off, text_off, len(text), len(text), 0x1000),  # R+X
        _PHDR.pack(
            _PT_LOAD,
            0x4,
            dynamic_off,
            dynamic_off,
            dynamic_off,
            end_loaded - dynamic_off,
            end_loaded - dynamic_off,
            0x1000,
        ),
        _PHDR.pack(_PT_DYNAMIC, 0x6, dynamic_off, dynamic_off, dynamic_off, len(dynamic), len(dynamic), 8),
    ]
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian, version 1, System V ABI
    header = _EHDR.pack(
        ident,
        _ET_DYN,
        _EM_BPF,
        1,
        text_off,
        _EHDR.size,
        sh_off,
        0,
        _EHDR.size,
        _PHDR.size,
        len(phdrs),
        _SHDR.size,
        len(sections),
        len(sections) - 1,
    )
    out = bytearray(header + b"".join(phdrs))
    for offset, blob in (
        (text_off, text),
        (dynamic_off, dynamic),
        (dynsym_off, dynsym),
        (dynstr_off, dynstr),
        (rel_off, rel),
        (shstr_off, shstrtab),
        (sh_off, b"".join(sections)),
    ):
        out += bytes(offset - len(out)) + blob
    return bytes(out)
