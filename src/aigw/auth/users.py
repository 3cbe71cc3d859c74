"""Accounts: create, list, update and deactivate users; check a login. No HTTP here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aigw.auth.passwords import MIN_PASSWORD_LENGTH, hash_password, verify_password
from aigw.auth.revocation import RevocationEpoch
from aigw.errors import Conflict, InvalidField, NotFound, Unauthorized
from aigw.store.models import ApiKey, Session, User

ROLES = ("customer", "admin")


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email or len(email) > 320:
        raise InvalidField(f"Not an email address: {email!r}", code="invalid_email")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidField(f"Password must be at least {MIN_PASSWORD_LENGTH} characters", code="weak_password")


async def create_user(
    db: AsyncSession, *, email: str, password: str, name: str = "", role: str = "customer", rate_limit: int = 60
) -> User:
    check_password(password)
    user = User(
        email=normalize_email(email),
        name=name,
        password_hash=await hash_password(password),
        role=role,
        rate_limit=rate_limit,
        active=True,
    )
    db.add(user)
    try:
        await db.flush()
    except IntegrityError as exc:
        raise Conflict(f"A user with email {user.email} already exists", code="email_taken") from exc
    return user


async def register_user(
    db: AsyncSession, *, email: str, password: str, name: str = "", role: str = "customer", rate_limit: int = 60
) -> User:
    """Create a user and commit it (an admin's or the CLI's request)."""
    user = await create_user(db, email=email, password=password, name=name, role=role, rate_limit=rate_limit)
    await db.commit()
    return user


async def list_users(db: AsyncSession, *, limit: int = 100, offset: int = 0) -> Sequence[User]:
    return (await db.scalars(select(User).order_by(User.id).limit(limit).offset(offset))).all()


async def get_user(db: AsyncSession, user_id: int) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found")
    return user


async def get_user_by_email(db: AsyncSession, email: str) -> User:
    user = await db.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        raise NotFound(f"No user with email {email}")
    return user


async def _active_admins(db: AsyncSession) -> int:
    return int(
        await db.scalar(select(func.count()).select_from(User).where(User.role == "admin", User.active.is_(True))) or 0
    )


async def update_user(db: AsyncSession, epoch: RevocationEpoch, user_id: int, changes: dict[str, Any]) -> User:
    """Apply `changes` (name, role, active, rate_limit, password); deactivation ends sessions and keys.

    The epoch is bumped after commit, so every worker re-reads this user on its next request.
    """
    user = await get_user(db, user_id)
    if "password" in changes:
        check_password(changes["password"])
        user.password_hash = await hash_password(changes.pop("password"))
    loses_admin = (
        user.role == "admin"
        and user.active
        and (changes.get("role", "admin") != "admin" or changes.get("active", True) is False)
    )
    if loses_admin and await _active_admins(db) <= 1:
        raise Conflict("This is the last active admin; promote another user first", code="last_admin")
    for field, value in changes.items():
        setattr(user, field, value)
    if user.active is False:
        await db.execute(delete(Session).where(Session.user_id == user.id))
        await db.execute(delete(ApiKey).where(ApiKey.user_id == user.id))
    await db.commit()
    await epoch.bump()
    return user


async def deactivate_user(db: AsyncSession, epoch: RevocationEpoch, user_id: int) -> User:
    return await update_user(db, epoch, user_id, {"active": False})


async def check_login(db: AsyncSession, email: str, password: str) -> User:
    user = await db.scalar(select(User).where(User.email == email.strip().lower()))
    ok = await verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        raise Unauthorized("Wrong email or password", code="invalid_credentials")
    return user


async def ensure_admin(db: AsyncSession, email: str, password: str) -> User | None:
    """Create the bootstrap admin unless an admin already exists; returns the user only if it is new.

    An existing user with that email is promoted and keeps their own password.
    """
    if await db.scalar(select(func.count()).select_from(User).where(User.role == "admin")):
        return None
    existing = await db.scalar(select(User).where(User.email == normalize_email(email)))
    if existing is not None:
        existing.role, existing.active = "admin", True
        return None
    return await create_user(db, email=email, password=password, name="Admin", role="admin", rate_limit=600)
