"""Where the web server may listen: loopback without sign-in, anywhere with it (or with an explicit waiver).

Without an [auth] section everyone who reaches the port acts as the local admin, so the launcher refuses a
non-loopback address unless ALLOW_UNAUTHENTICATED_REMOTE=true says the operator accepts that. The check runs
before the database starts, so a wrong command fails in a second with a message instead of serving.

It also hands Streamlit the same secrets file core reads (STREAMLIT_SECRETS_FILE), so "is sign-in on?" has
one answer in the web server and in core.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
from dataclasses import dataclass

from core.errors import WorkbenchError
from core.settings import get_settings, reset_settings_cache

log = logging.getLogger(__name__)

ADDRESS_FLAG = "--server.address"
SECRETS_FLAG = "--secrets.files"


class BindRefused(WorkbenchError):
    """The server would be reachable from other machines without sign-in; the message says how to proceed."""


@dataclass(frozen=True)
class Binding:
    address: str
    loopback: bool
    auth_enabled: bool


def is_loopback(address: str) -> bool:
    """True when only this machine can reach `address`: a loopback IP, `localhost`, or a host name that
    resolves to loopback addresses only. Empty (= every interface) and unresolvable names are not."""
    host = address.strip().strip("[]")
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as err:
        log.warning("cannot resolve server address %r (%s); treating it as reachable from other machines", host, err)
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)


def check_binding(*, address: str) -> Binding:
    """Refuse (BindRefused) a non-loopback `address` without sign-in unless the operator waived it."""
    settings = get_settings()
    loopback = is_loopback(address)
    if loopback:
        return Binding(address=address, loopback=True, auth_enabled=_auth_enabled_or_false())
    try:
        auth = settings.auth_enabled
    except RuntimeError as err:  # an unreadable secrets file cannot prove sign-in is on
        raise BindRefused(f"Refusing to serve on {address!r}: {err}") from err
    if auth:
        return Binding(address=address, loopback=False, auth_enabled=True)
    if settings.allow_unauthenticated_remote:
        log.warning("serving on %r WITHOUT sign-in (ALLOW_UNAUTHENTICATED_REMOTE=true): anyone who reaches it "
                    "acts as %s", address, settings.local_role)
        return Binding(address=address, loopback=False, auth_enabled=False)
    shown = address or "every interface"
    raise BindRefused(
        f"Refusing to serve on {shown!r} without sign-in: anyone who can reach that address would act as "
        f"{settings.local_role}. Either configure sign-in (an [auth] section in {settings.streamlit_secrets_file}; "
        "see README, 'Sign-in and roles'), or bind 127.0.0.1 (the default), or set "
        "ALLOW_UNAUTHENTICATED_REMOTE=true to accept that risk.")


def _auth_enabled_or_false() -> bool:
    try:
        return get_settings().auth_enabled
    except RuntimeError as err:  # the page shows it; a loopback server still starts
        log.warning("%s", err)
        return False


def _flag_value(args: list[str], flag: str) -> tuple[str | None, list[str]]:
    """The value of `flag` in Streamlit-style args (`--flag v` or `--flag=v`; the last one wins) and the
    args without it."""
    value, rest, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg == flag and i + 1 < len(args):
            value, i = args[i + 1], i + 2
            continue
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def streamlit_args(args: list[str]) -> tuple[list[str], Binding]:
    """Streamlit's command-line args with the checked bind address and the shared secrets file made explicit.

    The address is `--server.address` if given, else SERVER_ADDRESS. A `--secrets.files` given here becomes
    STREAMLIT_SECRETS_FILE for core too (this process and its children); otherwise core's file is passed on."""
    address, rest = _flag_value(list(args), ADDRESS_FLAG)
    secrets, rest = _flag_value(rest, SECRETS_FLAG)
    if secrets is not None and os.environ.get("STREAMLIT_SECRETS_FILE") != secrets:
        os.environ["STREAMLIT_SECRETS_FILE"] = secrets
        reset_settings_cache()
    settings = get_settings()
    binding = check_binding(address=settings.server_address if address is None else address)
    return [*rest, ADDRESS_FLAG, binding.address, SECRETS_FLAG, str(settings.streamlit_secrets_file)], binding
