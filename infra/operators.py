"""The console's users: who they are, what their role allows, which tenants they see;
their passwords (Argon2id), their sessions and throttled sign-ins. PostgreSQL holds them
(migration 0011); `stepstream users` manages them and the console reads them."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher()  # Argon2id, the library's current defaults (RFC 9106)
# A hash verified for names that do not exist: a sign-in costs the same either way, so
# its time does not tell which names are users.
_ABSENT_USER_HASH = HASHER.hash(secrets.token_urlsafe(16))


class Role(IntEnum):
    """Each role may do what the ones below it may."""

    VIEWER = 1  # read
    OPERATOR = 2  # retry, rerun, resume, cancel, answer human tasks, redrive
    ADMIN = 3  # users and definitions

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            roles = ", ".join(str(role) for role in cls)
            raise ValueError(f"no role {name!r}: one of {roles}") from None


@dataclass(frozen=True)
class Operator:
    name: str
    role: Role
    tenants: tuple[str, ...] | None  # None: every tenant
    disabled: bool = False

    def sees(self, tenant_id: str | None) -> bool:
        """A record of no known tenant (an undecodable dead letter) is seen only by
        those who see every tenant."""
        if self.tenants is None:
            return True
        return tenant_id is not None and tenant_id in self.tenants

    def may(self, role: Role) -> bool:
        return self.role >= role

    @property
    def scope(self) -> str:
        return "every tenant" if self.tenants is None else ", ".join(self.tenants) or "no tenant"


def operator_of(row: asyncpg.Record) -> Operator:
    tenants = row["tenants"]
    return Operator(
        row["name"],
        Role.named(row["role"]),
        None if tenants is None else tuple(tenants),
        row["disabled"],
    )


class UserError(ValueError):
    """A users command that cannot be done, and why."""


async def add_user(
    connection: asyncpg.Connection,
    name: str,
    password: str,
    role: Role,
    tenants: Sequence[str] | None,
) -> Operator:
    if not name.strip():
        raise UserError("a user needs a name")
    if len(password) < 12:
        raise UserError("a password needs at least 12 characters")
    row = await connection.fetchrow(
        "INSERT INTO console_users (name, password_hash, role, tenants) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (name) DO NOTHING RETURNING *",
        name,
        HASHER.hash(password),
        str(role),
        None if tenants is None else list(tenants),
    )
    if row is None:
        raise UserError(f"user {name!r} exists")
    return operator_of(row)


async def list_users(connection: asyncpg.Connection) -> list[Operator]:
    rows = await connection.fetch("SELECT * FROM console_users ORDER BY name")
    return [operator_of(row) for row in rows]


async def set_disabled(connection: asyncpg.Connection, name: str, disabled: bool) -> None:
    """A disabled user's sessions end at once: they are deleted with the change."""
    async with connection.transaction():
        found = await connection.fetchval(
            "UPDATE console_users SET disabled = $2 WHERE name = $1 RETURNING name",
            name,
            disabled,
        )
        if found is None:
            raise UserError(f"no user {name!r}")
        await connection.execute("DELETE FROM console_sessions WHERE user_name = $1", name)


async def grant(
    connection: asyncpg.Connection,
    name: str,
    role: Role | None = None,
    tenants: Sequence[str] | None = None,
    every_tenant: bool = False,
) -> Operator:
    """A new role, or a new tenant scope (the listed tenants, or every tenant)."""
    scope_changes = every_tenant or tenants is not None
    row = await connection.fetchrow(
        "UPDATE console_users SET role = COALESCE($2, role),"
        " tenants = CASE WHEN $3 THEN $4::text[] ELSE tenants END WHERE name = $1 RETURNING *",
        name,
        None if role is None else str(role),
        scope_changes,
        None if every_tenant or tenants is None else list(tenants),
    )
    if row is None:
        raise UserError(f"no user {name!r}")
    return operator_of(row)


# Sign-in ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInPolicy:
    # Failed sign-ins allowed in `window`: per name tried (guessing one user's password),
    # and, more, per address (trying many names; one office may share an address).
    failures_per_name: int = 5
    failures_per_address: int = 50
    window: timedelta = timedelta(minutes=15)
    idle_timeout: timedelta = timedelta(minutes=30)
    lifetime: timedelta = timedelta(hours=12)  # a session ends then, however active


@dataclass(frozen=True)
class Session:
    token: str  # the cookie's value; only its hash is stored
    operator: Operator
    csrf_token: str


class Throttled(Exception):
    """Too many failed sign-ins for this name or address: refused until the window passes."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def sign_in(
    connection: asyncpg.Connection, name: str, password: str, remote: str, policy: SignInPolicy
) -> Session | None:
    """A new session, or None for a wrong name, password or a disabled user (which one
    is not said). Raises Throttled past the allowed failures, before checking anything."""
    await _forget_old(connection, policy)
    failures = await connection.fetchrow(
        "SELECT count(*) FILTER (WHERE user_name = $1) AS by_name,"
        " count(*) FILTER (WHERE remote = $2) AS by_address FROM console_sign_in_failures"
        " WHERE (user_name = $1 OR remote = $2) AND failed_at > now() - $3::interval",
        name,
        remote,
        policy.window,
    )
    if (
        failures["by_name"] >= policy.failures_per_name
        or failures["by_address"] >= policy.failures_per_address
    ):
        raise Throttled(f"too many failed sign-ins: try again in {policy.window}")
    row = await connection.fetchrow("SELECT * FROM console_users WHERE name = $1", name)
    if not _password_matches(row["password_hash"] if row else _ABSENT_USER_HASH, password):
        row = None
    if row is None or row["disabled"]:
        await connection.execute(
            "INSERT INTO console_sign_in_failures (user_name, remote) VALUES ($1, $2)",
            name,
            remote,
        )
        return None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await connection.execute(
        "INSERT INTO console_sessions (token_hash, user_name, csrf_token) VALUES ($1, $2, $3)",
        token_hash(token),
        name,
        csrf,
    )
    if HASHER.check_needs_rehash(row["password_hash"]):  # the library's defaults moved on
        await connection.execute(
            "UPDATE console_users SET password_hash = $2 WHERE name = $1",
            name,
            HASHER.hash(password),
        )
    return Session(token, operator_of(row), csrf)


async def _forget_old(connection: asyncpg.Connection, policy: SignInPolicy) -> None:
    """Sessions past their lifetime and failures past the window: kept no longer."""
    await connection.execute(
        "DELETE FROM console_sessions WHERE created_at < now() - $1::interval", policy.lifetime
    )
    await connection.execute(
        "DELETE FROM console_sign_in_failures WHERE failed_at < now() - $1::interval",
        policy.window,
    )


def _password_matches(stored_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def find_session(
    connection: asyncpg.Connection, token: str, policy: SignInPolicy
) -> Session | None:
    """The live session of this cookie, marked as seen now; None once it has been idle
    too long, lived too long, signed out, or its user was disabled."""
    row = await connection.fetchrow(
        "UPDATE console_sessions s SET seen_at = now() FROM console_users u"
        " WHERE s.token_hash = $1 AND u.name = s.user_name AND NOT u.disabled"
        " AND s.seen_at > now() - $2::interval AND s.created_at > now() - $3::interval"
        " RETURNING u.*, s.csrf_token",
        token_hash(token),
        policy.idle_timeout,
        policy.lifetime,
    )
    return None if row is None else Session(token, operator_of(row), row["csrf_token"])


async def sign_out(connection: asyncpg.Connection, token: str) -> None:
    await connection.execute(
        "DELETE FROM console_sessions WHERE token_hash = $1", token_hash(token)
    )
