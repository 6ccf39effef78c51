"""The command line's connection flags, generated from ``Connection``'s fields, and back.

Each flag's name and help text sit on the field it sets (connection.option), and its parsed value
lands under the field's own name, so the flags -> client keywords mapping is the identity: a new
connection option reaches every command without being written out here.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, Field, fields
from typing import Any

from .connection import Connection, Flag


def flagged() -> list[tuple[Field[Any], Flag]]:
    """The connection options that have a command-line flag, in declaration order."""
    return [(f, f.metadata["flag"]) for f in fields(Connection) if "flag" in f.metadata]


def argument(option: Field[Any], flag: Flag) -> dict[str, Any]:
    """argparse's keywords for one option: a switch for a bool, else a value of the default's type."""
    default = option.default
    assert default is not MISSING, f"{option.name}: a flagged option needs a plain default"
    if isinstance(default, bool):  # the flag says the opposite of the default: --tls, --no-health-check
        return {"action": "store_false" if default else "store_true", "help": flag.help}
    notes = [f"env {flag.env}"] if flag.env else []
    if default is not None:
        notes.append(f"default {default:g}" if isinstance(default, float) else f"default {default}")
    if flag.env:
        default = os.environ.get(flag.env, default)
    parse = flag.parse or (float if isinstance(option.default, float) else str)
    helptext = f"{flag.help} ({', '.join(notes)})" if notes else flag.help
    metavar = flag.name.removeprefix("--").replace("-", "_").upper()  # named after the flag, not the option
    return {"default": default, "type": parse, "help": helptext, "metavar": metavar}


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    for option, flag in flagged():
        group.add_argument(flag.name, dest=option.name, **argument(option, flag))


def connection_options(args: argparse.Namespace) -> dict[str, Any]:
    """The client keywords the connection flags gave: Client(**connection_options(args))."""
    return {option.name: getattr(args, option.name) for option, _ in flagged()}
