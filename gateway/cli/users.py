"""``gateway users hash-password``: the argon2 hash of a workspace password, for ``[[users]]``.

The password is read from standard input when it is not a terminal (one line, the newline
dropped), else asked twice without echo. Only the hash is printed; the password is never
an argument (it would stay in the shell history and the process list). See docs/workspace.md.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from gateway.errors import GatewayError

#: Shorter passwords are refused: a shared office computer's password must resist guessing.
MIN_PASSWORD_CHARS = 10


class PasswordInputError(GatewayError):
    """The password given to hash-password is unusable (empty, too short, the two differ)."""

    code = "password_input"


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``users`` command group."""
    users = sub.add_parser("users", help="workspace users",
                           description="Workspace users (see docs/workspace.md).")
    cmds = users.add_subparsers(dest="users_command", required=True, metavar="SUBCOMMAND")
    p = cmds.add_parser("hash-password", help="print the argon2 hash of a password for [[users]] password_argon2",
                        description="Read a password (stdin, or asked twice without echo on a terminal) and "
                                    "print its argon2id hash for the password_argon2 of a [[users]] entry.")
    p.set_defaults(func=cmd_hash_password)


def read_password() -> str:
    """The password from stdin (piped) or the terminal (asked twice, not echoed)."""
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise PasswordInputError("the two passwords differ")
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordInputError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    return password


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print the hash of the password read."""
    from gateway.workspace.passwords import hash_password

    print(hash_password(read_password()))
    return 0
