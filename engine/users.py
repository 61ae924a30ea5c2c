"""People and groups: creation, passwords (argon2), lookup as an Actor."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from .access import Actor
from .errors import Conflict, NotFound, ValidationFailed
from .models import Group, User

_hasher = PasswordHasher()

# The organisation of domain.md: group key -> Chinese name.
GROUPS = {
    "office": "办公室",
    "supervision": "安全生产综合监管股",
    "section_chiefs": "股室负责人",
    "legal": "法规股",
    "credit_liaison": "信用联络员",
    "deputies": "分管领导",
    "directors": "局长",
    "analysts": "业务分析员",
    "managers": "督查/管理",
    "admins": "系统管理员",
}

DEMO_USERS = {
    "registrar": ("登记员 王芳", ["office"]),
    "handler": ("承办人 李强", ["supervision"]),
    "chief": ("股室负责人 张伟", ["supervision", "section_chiefs"]),
    "legal": ("法制审核员 刘洋", ["legal"]),
    "liaison": ("信用联络员 陈静", ["credit_liaison"]),
    "deputy": ("分管领导 赵军", ["deputies", "managers"]),
    "director": ("局长 孙明", ["directors", "managers"]),
    "analyst": ("业务分析员 周敏", ["analysts"]),
    "supervisor": ("督查员 吴涛", ["managers"]),
    "admin": ("系统管理员 郑磊", ["admins"]),
}
DEMO_PASSWORD = "demo123"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def ensure_groups(session: Session) -> None:
    """Create the organisation's groups that are missing."""
    existing = set(session.scalars(select(Group.name)))
    for name, title in GROUPS.items():
        if name not in existing:
            session.add(Group(name=name, title=title))
    session.flush()


def create_user(
    session: Session,
    username: str,
    password: str,
    *,
    display_name: str = "",
    groups: list[str] = (),
    email: str | None = None,
    password_hash: str | None = None,
) -> User:
    """Create a user. Raises ValidationFailed (bad input, unknown group), Conflict (name taken).

    `password_hash` skips hashing when the caller already holds the hash of `password`.
    """
    errors = {}
    if (
        not username
        or len(username) > 64
        or not username.replace("_", "").replace("-", "").replace(".", "").isalnum()
    ):
        errors["username"] = ["用户名只能包含字母、数字、下划线、点和连字符"]
    if len(password or "") < 6:
        errors["password"] = ["密码至少 6 位"]
    found = {g.name: g for g in session.scalars(select(Group).where(Group.name.in_(list(groups))))}
    unknown = [g for g in groups if g not in found]
    if unknown:
        errors["groups"] = [f"用户组不存在：{', '.join(unknown)}"]
    if errors:
        raise ValidationFailed(errors)
    if session.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"用户名 {username} 已存在")
    user = User(
        username=username,
        display_name=display_name or username,
        email=email,
        password_hash=password_hash or hash_password(password),
        groups=[found[g] for g in groups],
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this password, or None."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active or not user.password_hash:
        _hasher.hash("timing-equaliser")  # same cost whether or not the user exists
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def actor_for(user: User) -> Actor:
    return Actor(user.username, frozenset(user.group_names), user.display_name)


def get_user(session: Session, username: str) -> User:
    """Raises NotFound."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"用户 {username} 不存在")
    return user


def seed_demo(session: Session, password_hash: str | None = None) -> list[str]:
    """The demo organisation of domain.md with the demo password; existing users are left alone."""
    ensure_groups(session)
    password_hash = password_hash or hash_password(DEMO_PASSWORD)
    created = []
    for username, (display_name, groups) in DEMO_USERS.items():
        if session.scalar(select(User.id).where(User.username == username)) is None:
            create_user(
                session,
                username,
                DEMO_PASSWORD,
                display_name=display_name,
                groups=groups,
                password_hash=password_hash,
            )
            created.append(username)
    return created
