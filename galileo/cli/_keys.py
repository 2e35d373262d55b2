"""``galileo keys gen``: CURVE key pairs for the coordinator and for workers on other hosts."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from galileo.cli._common import fail

__all__ = ["app"]

app = typer.Typer(rich_markup_mode=None, help="CURVE keys for workers joining from other hosts.", no_args_is_help=True)


@app.command("gen")
def gen(
    name: str = typer.Argument(..., help="A name for the pair, e.g. coordinator or the worker host's name."),
    directory: Path = typer.Option(Path("keys"), "--dir", help="Where to write NAME.key and NAME.key_secret."),
) -> None:
    """Write a CURVE key pair: NAME.key (public, shareable) and NAME.key_secret (mode 0600).

    The coordinator needs its own NAME.key_secret (farm.server_secret_key_path) and, in
    farm.authorized_keys_dir, the public NAME.key of every worker host allowed to join.
    A worker host needs its own NAME.key_secret and the coordinator's public key.
    """
    import zmq.auth

    if not name or "/" in name or name.startswith("."):
        raise fail(f"{name!r} is not a usable key name", 2)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise fail(f"{p} already exists; not overwriting it", 2)
    pub_path, sec_path = zmq.auth.create_certificates(directory, name)
    os.chmod(sec_path, 0o600)
    from broker.auth import fingerprint

    typer.echo(f"public key: {pub_path} ({fingerprint(zmq.auth.load_certificate(pub_path)[0])})")
    typer.echo(f"secret key: {sec_path} (keep it on this host only)")
