"""Who signed in: the OpenID Connect claims Streamlit puts in `st.user`, turned into a workbench identity.

The identity is the signed-in e-mail, lower-cased (what the member table and the audit trail key on);
the display name is only for showing. No Streamlit import: pages pass `st.user.to_dict()` in, so the
rules are tested without a browser and a script could use them too.

A sign-in writes only when there is something to keep: the first sign-in of an ADMIN_EMAILS person adds
them to the member table (so an admin can later change their role like anyone's), and a member whose
provider name changed gets it updated. Every other sign-in, including a stranger's, writes nothing, so
the audit trail does not fill up with sign-ins.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from core.errors import WorkbenchError
from core.settings import get_settings
from core.team.access import authorize, identity_key, role_of
from core.team.audit import record, snapshot
from db.engine import session_scope
from db.models import utcnow
from db.models_team import Member

log = logging.getLogger(__name__)

IDENTITY_MAX = 254  # member.identity and audit_event.actor columns; also the longest e-mail address (RFC 5321)
DISPLAY_NAME_MAX = 120  # member.display_name column
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
ADMIN_EMAILS_SOURCE = "ADMIN_EMAILS"  # created_by of a member the setting added


class SignInRefused(WorkbenchError):
    """The provider's answer cannot be used as a workbench identity; the message says what to fix."""


@dataclass(frozen=True)
class Person:
    """A signed-in person: `identity` is what core keys on, `display_name` what pages show."""

    identity: str
    display_name: str


@dataclass(frozen=True)
class SignIn:
    """The outcome of recording a sign-in: the person, the role they act with now, and what was written."""

    person: Person
    role: str
    wrote: str | None  # None, "member.first_admin" or "member.profile"


def _claim_text(claims: Mapping[str, Any], key: str) -> str:
    value = claims.get(key)
    return value.strip() if isinstance(value, str) else ""


def _is_false(value: Any) -> bool:
    """`email_verified` arrives as a JSON boolean from most providers, as a string from a few."""
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def _display_text(value: str) -> str:
    """A provider's name made safe to show on one line: controls and text-direction overrides dropped,
    whitespace runs collapsed, cut to the column's length. (A provider's odd name is not a reason to refuse.)"""
    text = _UNPRINTABLE.sub("", unicodedata.normalize("NFC", value))
    return " ".join(text.split())[:DISPLAY_NAME_MAX].strip()


def identity_from_claims(claims: Mapping[str, Any]) -> str:
    """The workbench identity of a signed-in person: their e-mail claim, trimmed and lower-cased.

    Refuses (SignInRefused) a sign-in without an e-mail, one the provider marks as unverified (anyone could
    otherwise claim an admin's address at a provider that lets people type one), and one that is not an
    e-mail address or is too long to store."""
    email = _claim_text(claims, "email")
    if not email:
        raise SignInRefused(
            "Your sign-in provider did not send an e-mail address, and the workbench uses it to know who you are. "
            "Ask the administrator to request the 'email' scope for the workbench's client (secrets.toml [auth] "
            "client_kwargs scope = \"openid email profile\") or to release the e-mail claim, then sign in again.")
    if _is_false(claims.get("email_verified")):
        raise SignInRefused(
            f"Your sign-in provider says the e-mail address {email!r} is not verified. Verify it with the "
            "provider (or ask its administrator to), then sign in again.")
    if _UNPRINTABLE.search(email) or not _EMAIL.match(email):
        raise SignInRefused(f"The e-mail address your sign-in provider sent ({email[:80]!r}) is not a valid "
                            "address, so the workbench cannot use it to know who you are.")
    if len(email) > IDENTITY_MAX:
        raise SignInRefused(f"The e-mail address your sign-in provider sent is {len(email)} characters; "
                            f"the workbench stores at most {IDENTITY_MAX}.")
    return identity_key(email)


def display_name_from_claims(claims: Mapping[str, Any], *, identity: str) -> str:
    """The name to show: `name`, else given + family name, else `preferred_username` or `nickname`,
    else the part of the e-mail before the @."""
    given = " ".join(p for p in (_claim_text(claims, "given_name"), _claim_text(claims, "family_name")) if p)
    for candidate in (_claim_text(claims, "name"), given, _claim_text(claims, "preferred_username"),
                      _claim_text(claims, "nickname")):
        shown = _display_text(candidate)
        if shown:
            return shown
    return identity.split("@", 1)[0][:DISPLAY_NAME_MAX]


def person_from_claims(claims: Mapping[str, Any]) -> Person:
    """Claims (`st.user.to_dict()` after a sign-in) -> the person; SignInRefused when they cannot be used."""
    if not isinstance(claims, Mapping):
        raise SignInRefused("The sign-in did not return any information about you; sign in again.")
    identity = identity_from_claims(claims)
    return Person(identity=identity, display_name=display_name_from_claims(claims, identity=identity))


def _record_once(person: Person) -> SignIn:
    with session_scope() as s:
        member = s.execute(sa.select(Member).where(Member.identity == person.identity)).scalars().first()
        wrote = None
        if member is None and person.identity in get_settings().admin_identities:
            role = authorize(s, who=person.identity, action="member.first_admin")
            member = Member(identity=person.identity, display_name=person.display_name, role="admin",
                            created_by=ADMIN_EMAILS_SOURCE)
            s.add(member)
            s.flush()
            record(s, who=person.identity, role=role, action="member.first_admin", entity="member",
                   entity_id=member.id, before=None, after=snapshot(member), label=person.display_name)
            wrote = "member.first_admin"
        elif member is not None and member.active and member.display_name != person.display_name:
            role = authorize(s, who=person.identity, action="member.profile")
            before = snapshot(member, fields=["display_name"])
            member.display_name = person.display_name
            member.updated_at = utcnow()
            s.flush()
            record(s, who=person.identity, role=role, action="member.profile", entity="member",
                   entity_id=member.id, before=before, after=snapshot(member, fields=["display_name"]),
                   label=person.display_name)
            wrote = "member.profile"
        return SignIn(person=person, role=role_of(s, who=person.identity), wrote=wrote)


def record_sign_in(*, claims: Mapping[str, Any]) -> SignIn:
    """Turn a sign-in's claims into the person and their role, keeping the member table's name current.

    Call it once per browser session after a sign-in (the page does); calling it again is harmless and
    writes nothing unless the provider's name changed. Two first sign-ins of the same admin at once (two
    tabs) race on the member's unique identity: the loser reads the winner's row instead."""
    person = person_from_claims(claims)
    try:
        return _record_once(person)
    except sa.exc.IntegrityError as err:
        log.info("concurrent first sign-in of %s; using the row the other session added (%s)",
                 person.identity, err.__class__.__name__)
        return _record_once(person)
