"""User and group administration for admins: create, disable/enable, reset password, groups.

Only the admins group gets here (webapp/permissions.py); the operations are engine.users'.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, select

from engine import users
from engine.models import HumanTask, User

from .. import database
from . import schemas

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="用户与用户组管理（系统管理员）")


def open_task_count(session, username: str) -> int:
    return session.scalar(
        select(func.count(HumanTask.id)).where(HumanTask.status == "open", HumanTask.assignee == username)
    )


def present_user(session, user: User) -> dict:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "active": user.active,
        "groups": user.group_names,
        "created_at": user.created_at,
        "open_tasks": open_task_count(session, user.username),
    }


def present_group(session, group) -> dict:
    members = [u.username for u in users.group_members(session, group.name)]
    return {"name": group.name, "title": group.title, "members": members}


@blp.route("/users")
class UsersView(MethodView):
    @blp.response(200, schemas.AdminUserList)
    def get(self):
        """Every user with groups, status and open task count."""
        with database.unit_of_work() as ctx:
            return {"items": [present_user(ctx.session, u) for u in users.list_users(ctx.session)]}

    @blp.arguments(schemas.AdminUserCreate)
    @blp.response(201, schemas.AdminUser)
    @blp.alt_response(409, schema=schemas.ApiError)
    def post(self, body):
        """Create a user in the given groups."""
        with database.unit_of_work() as ctx:
            user = users.create_account(ctx.session, actor=ctx.actor, **body)
            return present_user(ctx.session, user)


@blp.route("/users/<string:username>")
class UserView(MethodView):
    @blp.response(200, schemas.AdminUser)
    def get(self, username):
        """One user."""
        with database.unit_of_work() as ctx:
            return present_user(ctx.session, users.get_user(ctx.session, username))


@blp.route("/users/<string:username>/disable")
class DisableUserView(MethodView):
    @blp.response(200, schemas.AdminDisabled)
    @blp.alt_response(409, schema=schemas.ApiError)
    def post(self, username):
        """Disable a user: history kept, open tasks back to their groups, tokens end at once."""
        with database.unit_of_work() as ctx:
            released = users.disable_user(ctx.session, username, actor=ctx.actor)
            user = users.get_user(ctx.session, username)
            return {"user": present_user(ctx.session, user), "released_tasks": released}


@blp.route("/users/<string:username>/enable")
class EnableUserView(MethodView):
    @blp.response(200, schemas.AdminUser)
    def post(self, username):
        """Let a disabled user sign in again."""
        with database.unit_of_work() as ctx:
            return present_user(ctx.session, users.enable_user(ctx.session, username, actor=ctx.actor))


@blp.route("/users/<string:username>/password")
class PasswordView(MethodView):
    @blp.arguments(schemas.AdminPasswordReset)
    @blp.response(200, schemas.AdminPasswordResult)
    def post(self, body, username):
        """Set a new password, or generate one (returned once) when none is given."""
        with database.unit_of_work() as ctx:
            password = users.reset_password(ctx.session, username, body["password"], actor=ctx.actor)
        return {"username": username, "password": None if body["password"] else password}


@blp.route("/users/<string:username>/groups")
class UserGroupsView(MethodView):
    @blp.arguments(schemas.AdminUserGroups)
    @blp.response(200, schemas.AdminUser)
    @blp.alt_response(409, schema=schemas.ApiError)
    def put(self, body, username):
        """Replace a user's groups."""
        with database.unit_of_work() as ctx:
            user = users.set_groups(ctx.session, username, body["groups"], actor=ctx.actor)
            return present_user(ctx.session, user)


@blp.route("/groups")
class GroupsView(MethodView):
    @blp.response(200, schemas.AdminGroupList)
    def get(self):
        """Every group with its members."""
        with database.unit_of_work() as ctx:
            return {"items": [present_group(ctx.session, g) for g in users.list_groups(ctx.session)]}

    @blp.arguments(schemas.AdminGroupCreate)
    @blp.response(201, schemas.AdminGroup)
    @blp.alt_response(409, schema=schemas.ApiError)
    def post(self, body):
        """Create a group (its key is what diagrams use in candidateGroups)."""
        with database.unit_of_work() as ctx:
            group = users.create_group(ctx.session, body["name"], body["title"], actor=ctx.actor)
            return present_group(ctx.session, group)


@blp.route("/groups/<string:name>")
class GroupView(MethodView):
    @blp.arguments(schemas.AdminGroupRename)
    @blp.response(200, schemas.AdminGroup)
    def patch(self, body, name):
        """Rename a group's title (its key stays)."""
        with database.unit_of_work() as ctx:
            group = users.rename_group(ctx.session, name, body["title"], actor=ctx.actor)
            return present_group(ctx.session, group)
