"""Titan's WebSocket messages (reference §4): MessagePack maps, gzip-wrapped under ``+gzip``.

Requests are ``{id, data: {Kind: body}}`` with camelCase keys and pubkeys as 32-byte bin.
Server messages are single-key maps (``Response``, ``Error``, ``StreamData``, ``StreamEnd``);
each is decoded lazily: the outer map keeps its value as raw MessagePack, and only the kind
we need is decoded into its Struct. Unknown fields are ignored, unknown kinds skipped.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import msgspec
from solders.pubkey import Pubkey

from broker.jobs import TitanSubscribe
from broker.results import TitanInfo, TitanQuote
from workers.clients.instructions import TitanInstruction, b58_key, from_titan

__all__ = [
    "MAX_FRAME",
    "PROTOCOL",
    "PROTOCOL_GZIP",
    "ErrorMessage",
    "Framing",
    "Response",
    "ServerMessage",
    "StreamData",
    "StreamEnd",
    "best_quote",
    "new_stream_request",
    "server_info",
]

PROTOCOL = "v1.api.titan.ag"
PROTOCOL_GZIP = "v1.api.titan.ag+gzip"
MAX_FRAME = 16 << 20  # a decompressed frame larger than this is refused (a gzip bomb is not a quote)


class StreamInfo(msgspec.Struct, rename="camel"):
    id: int
    data_type: str = ""


class Response(msgspec.Struct, rename="camel", kw_only=True):
    """``Response``: the answer to request ``request_id``; ``stream`` when it opened one."""

    request_id: int
    data: dict[str, msgspec.Raw] = {}
    stream: StreamInfo | None = None


class ErrorMessage(msgspec.Struct, rename="camel", kw_only=True):
    """``Error``: request ``request_id`` failed (Titan documents no codes)."""

    request_id: int
    code: int
    message: str = ""


class StreamData(msgspec.Struct, kw_only=True):
    """``StreamData``: update ``seq`` of stream ``id``; ``payload`` is ``{"SwapQuotes": ...}``."""

    id: int
    seq: int
    payload: dict[str, msgspec.Raw]


class StreamEnd(msgspec.Struct, rename="camel", kw_only=True):
    """``StreamEnd``: stream ``id`` is over, with ``error_code`` when it failed."""

    id: int
    error_code: int | None = None
    error_message: str | None = None


ServerMessage = Response | ErrorMessage | StreamData | StreamEnd


class _Step(msgspec.Struct, rename="camel"):
    label: str = ""


class _Route(msgspec.Struct, rename="camel", kw_only=True):
    in_amount: int
    out_amount: int
    slippage_bps: int
    instructions: list[TitanInstruction]
    address_lookup_tables: list[bytes]
    steps: list[_Step] = []
    context_slot: int | None = None
    compute_units: int | None = None
    compute_units_safe: int | None = None
    expires_after_slot: int | None = None


class _SwapQuotes(msgspec.Struct, rename="camel", kw_only=True):
    quotes: dict[str, _Route]
    id: str = ""
    swap_mode: str | None = None


class _Range(msgspec.Struct):
    min: int = 0
    max: int = 0
    default: int = 0


class _QuoteUpdate(msgspec.Struct, rename="camel"):
    interval_ms: _Range = msgspec.field(default_factory=_Range)


class _Connection(msgspec.Struct, rename="camel"):
    concurrent_streams: int


class _Settings(msgspec.Struct, rename="camel"):
    connection: _Connection
    quote_update: _QuoteUpdate = msgspec.field(default_factory=_QuoteUpdate)


class _Version(msgspec.Struct):
    major: int = 0
    minor: int = 0
    patch: int = 0


class _ServerInfo(msgspec.Struct, rename="camel"):
    settings: _Settings
    protocol_version: _Version = msgspec.field(default_factory=_Version)


_outer = msgspec.msgpack.Decoder(dict[str, msgspec.Raw])
_kinds: dict[str, msgspec.msgpack.Decoder[Any]] = {
    "Response": msgspec.msgpack.Decoder(Response),
    "Error": msgspec.msgpack.Decoder(ErrorMessage),
    "StreamData": msgspec.msgpack.Decoder(StreamData),
    "StreamEnd": msgspec.msgpack.Decoder(StreamEnd),
}
_swap_quotes = msgspec.msgpack.Decoder(_SwapQuotes)
_server_info = msgspec.msgpack.Decoder(_ServerInfo)
_encoder = msgspec.msgpack.Encoder()


class Framing:
    """Encode requests and decode server messages for one connection (gzip iff negotiated)."""

    def __init__(self, protocol: str | None) -> None:
        self.gzip = protocol is not None and "+gzip" in protocol

    def encode(self, request_id: int, data: dict[str, Any]) -> bytes:
        """A ClientRequest frame."""
        raw = _encoder.encode({"id": request_id, "data": data})
        return gzip.compress(raw, compresslevel=1, mtime=0) if self.gzip else raw

    def decode(self, frame: bytes) -> ServerMessage | None:
        """One server frame; None for a kind we do not use. Raises ValueError or msgspec.DecodeError."""
        if self.gzip:
            inflater = zlib.decompressobj(wbits=31)
            try:
                frame = inflater.decompress(frame, MAX_FRAME)
            except zlib.error as exc:
                raise ValueError(f"frame is not gzip data: {exc}") from None
            if inflater.unconsumed_tail:
                raise ValueError(f"frame inflates to more than {MAX_FRAME} bytes")
        outer = _outer.decode(frame)
        if len(outer) != 1:
            raise ValueError(f"a server message is a single-key map, got keys {sorted(outer)}")
        ((kind, raw),) = outer.items()
        decoder = _kinds.get(kind)
        if decoder is None:
            return None
        message: ServerMessage = decoder.decode(raw)
        return message


def _key(value: str, name: str) -> bytes:
    try:
        return bytes(Pubkey.from_string(value))
    except ValueError:
        raise ValueError(f"{name} is not a base58 public key: {value!r}") from None


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def new_stream_request(job: TitanSubscribe) -> dict[str, Any]:
    """The ``NewSwapQuoteStream`` request data of ``job``; ValueError for a bad key."""
    swap = _present(
        inputMint=_key(job.input_mint, "input_mint"),
        outputMint=_key(job.output_mint, "output_mint"),
        amount=job.amount,
        swapMode=job.swap_mode,
        slippageBps=job.slippage_bps,
        dexes=job.dexes,
        excludeDexes=job.exclude_dexes,
        onlyDirectRoutes=job.only_direct_routes,
        addSizeConstraint=job.add_size_constraint,
        sizeConstraint=job.size_constraint,
        providers=job.providers,
        accountsLimitTotal=job.accounts_limit_total,
        accountsLimitWritable=job.accounts_limit_writable,
    )
    transaction = _present(
        userPublicKey=_key(job.user_public_key, "user_public_key"),
        closeInputTokenAccount=job.close_input_token_account,
        createOutputTokenAccount=job.create_output_token_account,
    )
    body: dict[str, Any] = {"swap": swap, "transaction": transaction}
    update = _present(intervalMs=job.interval_ms, numQuotes=job.num_quotes)
    if update:
        body["update"] = update
    return {"NewSwapQuoteStream": body}


def best_quote(data: StreamData, stream_id: int, swap_mode: str | None) -> TitanQuote | None:
    """The best route of a StreamData update, decoded; None when it carries no route.

    Best is the most output for ExactIn and the least input for ExactOut. Raises ValueError or
    msgspec.DecodeError for a payload that is not SwapQuotes as documented.
    """
    raw = data.payload.get("SwapQuotes")
    if raw is None:
        raise ValueError(f"StreamData payload is not SwapQuotes (kinds: {sorted(data.payload)})")
    quotes = _swap_quotes.decode(raw)
    if not quotes.quotes:
        return None
    exact_out = (quotes.swap_mode or swap_mode) == "ExactOut"
    amounts = {name: (r.in_amount if exact_out else r.out_amount) for name, r in quotes.quotes.items()}
    pick = min if exact_out else max
    provider = pick(amounts, key=lambda name: amounts[name])
    route = quotes.quotes[provider]
    return TitanQuote(
        provider=provider,
        in_amount=route.in_amount,
        out_amount=route.out_amount,
        slippage_bps=route.slippage_bps,
        instructions=from_titan(route.instructions),
        alts=[b58_key(k) for k in route.address_lookup_tables],
        compute_units=route.compute_units or 0,
        compute_units_safe=route.compute_units_safe or 0,
        context_slot=route.context_slot or 0,
        expires_after_slot=route.expires_after_slot or 0,
        seq=data.seq,
        stream_id=stream_id,
        quote_id=quotes.id,
        route=[step.label for step in route.steps],
        providers=amounts,
    )


def server_info(response: Response, protocol: str) -> TitanInfo:
    """The TitanInfo of a ``GetInfo`` Response; ValueError or msgspec.DecodeError when it is not one."""
    raw = response.data.get("GetInfo")
    if raw is None:
        raise ValueError(f"GetInfo was answered with {sorted(response.data)}")
    info = _server_info.decode(raw)
    if info.settings.connection.concurrent_streams < 1:
        raise ValueError(f"GetInfo says concurrentStreams {info.settings.connection.concurrent_streams}")
    interval = info.settings.quote_update.interval_ms
    v = info.protocol_version
    return TitanInfo(
        concurrent_streams=info.settings.connection.concurrent_streams,
        interval_ms_min=interval.min,
        interval_ms_max=interval.max,
        interval_ms_default=interval.default,
        protocol=protocol,
        version=f"{v.major}.{v.minor}.{v.patch}",
    )
