"""People and groups: creation, passwords (argon2), lookup as an Actor."""

from __future__ import annotations

import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from .access import Actor
from .audit import record_event, record_task_event
from .errors import Conflict, NotFound, ValidationFailed
from .models import Group, HumanTask, User, UserGroup

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


def actor_for(user: User | Actor) -> Actor:
    """The Actor of a user row; an Actor (an API caller, already resolved) is returned as is."""
    if isinstance(user, Actor):
        return user
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


# --- administration (admins only: webapp/permissions.py gates the pages and the API) ---------

GROUP_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
ADMINS_GROUP = "admins"
GENERATED_PASSWORD_BYTES = 9  # 12 URL-safe characters


def list_users(session: Session) -> list[User]:
    """Every user, active first, by user name."""
    return list(session.scalars(select(User).order_by(User.active.desc(), User.username)))


def list_groups(session: Session) -> list[Group]:
    """Every group by name."""
    return list(session.scalars(select(Group).order_by(Group.name)))


def group_members(session: Session, name: str) -> list[User]:
    """The users of a group (active or not), by user name."""
    return list(
        session.scalars(
            select(User).join(UserGroup).join(Group).where(Group.name == name).order_by(User.username)
        )
    )


def _audit(session: Session, type: str, actor: Actor, **details) -> None:
    """An administration event in the audit trail (outside any instance's chain)."""
    record_event(session, type, user=actor.username, details=details)


def _check_password(password: str) -> None:
    if len(password or "") < 6:
        raise ValidationFailed({"password": ["密码至少 6 位"]})


def _active_admins(session: Session) -> set[str]:
    return {u.username for u in group_members(session, ADMINS_GROUP) if u.active}


def _keep_an_admin(session: Session, username: str) -> None:
    """Refuse a change that would leave nobody able to administer users."""
    if _active_admins(session) - {username}:
        return
    raise Conflict("不能停用或移出最后一名系统管理员")


def create_account(
    session: Session,
    username: str,
    password: str,
    *,
    actor: Actor,
    display_name: str = "",
    groups: list[str] = (),
    email: str | None = None,
) -> User:
    """Create a user on an administrator's behalf, audited. Raises ValidationFailed, Conflict."""
    user = create_user(
        session, username, password, display_name=display_name, groups=list(groups), email=email
    )
    _audit(session, "user_created", actor, username=username, groups=sorted(groups))
    return user


def disable_user(session: Session, username: str, *, actor: Actor) -> list[int]:
    """Disable an account, keeping its history; its open tasks go back (audited per task).

    A task the user holds returns to its candidate groups; a task delegated to them (委派)
    returns to the person who delegated it; a task they delegated to someone else returns to
    the groups too, since nobody would receive it back. Their sessions and tokens stop working
    at once (both check `active`). Returns the ids of the tasks moved.
    Raises NotFound, Conflict (themselves, or the last administrator).
    """
    user = get_user(session, username)
    if username == actor.username:
        raise Conflict("不能停用自己的账号")
    if ADMINS_GROUP in user.group_names:
        _keep_an_admin(session, username)
    user.active = False
    _audit(session, "user_disabled", actor, username=username)
    tasks = session.scalars(
        select(HumanTask)
        .where(HumanTask.status == "open")
        .where((HumanTask.assignee == username) | (HumanTask.owner == username))
        .order_by(HumanTask.id)
    )
    moved = []
    for task in tasks:
        back_to_owner = task.assignee == username and task.owner not in (None, username)
        target = task.owner if back_to_owner else None
        task.assignee, task.owner = target, None
        record_task_event(
            session,
            task,
            "task_released",
            user=actor.username,
            comment="用户已停用，任务退回" + ("委派人" if target else "候选组"),
            details={"from": username, "to": target, "reason": "user_disabled"},
        )
        moved.append(task.id)
    session.flush()
    return moved


def enable_user(session: Session, username: str, *, actor: Actor) -> User:
    """Let a disabled user sign in again (their tasks stay where they went). Raises NotFound."""
    user = get_user(session, username)
    if not user.active:
        user.active = True
        _audit(session, "user_enabled", actor, username=username)
        session.flush()
    return user


def reset_password(session: Session, username: str, password: str | None = None, *, actor: Actor) -> str:
    """Set a new password (a generated one when None) and return it; every session and token
    of the user ends (both carry a fingerprint of the hash). Raises NotFound, ValidationFailed."""
    user = get_user(session, username)
    password = password or secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    _check_password(password)
    user.password_hash = hash_password(password)
    _audit(session, "password_reset", actor, username=username)
    session.flush()
    return password


def set_groups(session: Session, username: str, groups: list[str], *, actor: Actor) -> User:
    """Replace a user's groups. Raises NotFound, ValidationFailed (unknown group),
    Conflict (it would leave no active administrator)."""
    user = get_user(session, username)
    wanted = sorted(set(groups))
    found = {g.name: g for g in session.scalars(select(Group).where(Group.name.in_(wanted)))}
    unknown = [g for g in wanted if g not in found]
    if unknown:
        raise ValidationFailed({"groups": [f"用户组不存在：{', '.join(unknown)}"]})
    if ADMINS_GROUP in user.group_names and ADMINS_GROUP not in wanted and user.active:
        _keep_an_admin(session, username)
    before = user.group_names
    user.groups = [found[g] for g in wanted]
    _audit(session, "groups_changed", actor, username=username, before=before, after=wanted)
    session.flush()
    return user


def _check_title(title: str) -> str:
    title = (title or "").strip()
    if not title or len(title) > 128:
        raise ValidationFailed({"title": ["名称不能为空，最多 128 个字符"]})
    return title


def create_group(session: Session, name: str, title: str, *, actor: Actor) -> Group:
    """A new group (its key is what diagrams name in candidateGroups).
    Raises ValidationFailed, Conflict (key taken)."""
    errors = {}
    if not GROUP_NAME_PATTERN.match(name or ""):
        errors["name"] = ["标识以小写字母开头，只含小写字母、数字和下划线，2–64 位"]
    try:
        title = _check_title(title)
    except ValidationFailed as exc:
        errors.update(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    if session.scalar(select(Group.id).where(Group.name == name)):
        raise Conflict(f"用户组 {name} 已存在")
    group = Group(name=name, title=title)
    session.add(group)
    session.flush()
    _audit(session, "group_created", actor, group=name, title=title)
    return group


def rename_group(session: Session, name: str, title: str, *, actor: Actor) -> Group:
    """Change a group's title (its key stays: diagrams refer to it). Raises NotFound, ValidationFailed."""
    group = session.scalar(select(Group).where(Group.name == name))
    if group is None:
        raise NotFound(f"用户组 {name} 不存在")
    title = _check_title(title)
    if title != group.title:
        before, group.title = group.title, title
        _audit(session, "group_renamed", actor, group=name, before=before, after=title)
        session.flush()
    return group
