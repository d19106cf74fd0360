"""Who owns an uploaded model or a training job, and who may see, change or share it.

An owner is a random secret (``secrets.token_urlsafe(32)``): browsers keep it in the ``cnn_vis_owner``
cookie, REST clients get it back as ``owner_token`` when they create something and send it as the
``X-Owner-Token`` header (the header wins over the cookie). Only its sha256 is ever stored with an item,
so a copy of the data directory does not hand out identities.

The lecturer is whoever sends ``X-Admin-Token`` equal to ``Settings.admin_token``: they may see, delete,
cancel and share anything, and per-owner quotas do not apply to them. Without an admin token configured
there is no lecturer, and a request sending the header is refused (never silently ignored).

What a caller may do with an item (``Access``):

- built-in models: everyone reads them, nobody deletes them;
- an owned item: its owner and the lecturer read and change it; others read it only when it is shared
  (a model the lecturer shared), and otherwise it is reported as not existing (404), so that ids of other
  students' models do not leak through error messages;
- an uploaded model stored before owners existed (no owner recorded): everyone reads it, only the lecturer
  deletes it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from app.errors import ApiError

OWNER_COOKIE = "cnn_vis_owner"
OWNER_HEADER = "X-Owner-Token"
ADMIN_HEADER = "X-Admin-Token"
#: a year: the identity outlives a browser session, so a student finds their models again next week
COOKIE_MAX_AGE = 365 * 24 * 3600
#: what a token may look like: URL-safe characters, long enough not to be guessed
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{32,128}")


def new_token() -> str:
    """A fresh owner token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored with an item instead of the token: its sha256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def valid_token(token: str | None) -> bool:
    """True when ``token`` looks like a token this server hands out (or one as strong)."""
    return token is not None and TOKEN_PATTERN.fullmatch(token) is not None


@dataclass(frozen=True)
class Identity:
    """The caller: their owner token (None until they create something) and whether they are the lecturer.

    ``from_cookie``: the token came from the cookie (no need to set it again)."""

    token: str | None = None
    admin: bool = False
    from_cookie: bool = False

    @property
    def owner(self) -> str | None:
        """The stored form of the token (sha256 hex), or None without a token."""
        return hash_token(self.token) if self.token is not None else None

    def owns(self, owner: str | None) -> bool:
        """True when ``owner`` (a stored hash) is this caller's."""
        mine = self.owner
        return mine is not None and owner is not None and hmac.compare_digest(mine, owner)


def identify(header_token: str | None, cookie_token: str | None, admin_header: str | None,
             admin_token: str | None) -> Identity:
    """The caller from the request's ``X-Owner-Token`` header, cookie and ``X-Admin-Token``.

    A malformed header is refused (422: the client meant to send a token); a malformed cookie is ignored (the
    browser gets a new one). A wrong or unconfigured admin token is refused with 403."""
    admin = is_admin(admin_header, admin_token)
    if header_token is not None:
        if not valid_token(header_token):
            raise ApiError(422, f"the {OWNER_HEADER} header is not an owner token (32 to 128 letters, digits, '-' "
                                "or '_'): send the owner_token a POST /api/models or POST /api/training/jobs "
                                "returned, or leave the header out to be given a new one")
        return Identity(header_token, admin)
    if valid_token(cookie_token):
        return Identity(cookie_token, admin, from_cookie=True)
    return Identity(None, admin)


def is_admin(admin_header: str | None, admin_token: str | None) -> bool:
    """True for the right lecturer token, False without the header; 403 for a wrong one or when none is set."""
    if admin_header is None:
        return False
    if not admin_token:
        raise ApiError(403, f"this server has no lecturer token (CNN_VIS_ADMIN_TOKEN is not set), so {ADMIN_HEADER} "
                            "cannot be used: send the request without it, or set CNN_VIS_ADMIN_TOKEN and restart")
    if not hmac.compare_digest(admin_header.encode(), admin_token.encode()):
        raise ApiError(403, f"the {ADMIN_HEADER} header does not match the lecturer token: send the right token, "
                            "or leave the header out to act as yourself")
    return True


@dataclass(frozen=True)
class Access:
    """Who an item belongs to: ``owner`` is the stored token hash (None: built-in, or stored before owners
    existed); ``shared``: the lecturer made it visible to everyone; ``builtin``: shipped with the app."""

    owner: str | None
    shared: bool = False
    builtin: bool = False


def may_read(access: Access, identity: Identity) -> bool:
    """Built-in, shared, unowned (legacy) items are everyone's; others only their owner's and the lecturer's."""
    return access.builtin or access.shared or access.owner is None or identity.admin or identity.owns(access.owner)


def may_change(access: Access, identity: Identity) -> bool:
    """Deleting or cancelling: the owner and the lecturer (built-ins are refused elsewhere)."""
    return identity.admin or identity.owns(access.owner)


def check_may_change(access: Access, identity: Identity, what: str, action: str, verb: str) -> None:
    """403 unless the caller owns the item or is the lecturer; the message says whose it is not and what works.

    ``what``: 'model'; ``action``: 'delete'; ``verb``: 'uploaded' (as in "this model was uploaded by")."""
    if may_change(access, identity):
        return
    if access.owner is None:  # uploaded before models had owners, or its meta.json is damaged
        raise ApiError(403, f"this {what} has no owner on record (stored before owners existed, or its meta.json "
                            f"is damaged): only the lecturer ({ADMIN_HEADER}) may {action} it")
    raise ApiError(403, f"this {what} was {verb} by someone else: only its owner (the browser or "
                        f"{OWNER_HEADER} that {verb} it) or the lecturer ({ADMIN_HEADER}) may {action} it")


def check_admin(identity: Identity, action: str) -> None:
    """403 unless the caller is the lecturer."""
    if not identity.admin:
        raise ApiError(403, f"only the lecturer may {action}: send the lecturer token as the {ADMIN_HEADER} header")
