"""Tasks: the inbox by scope, detail with form, and the task actions."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from engine import queries, runtime

from .. import database
from . import present, schemas

blp = Blueprint("tasks", __name__, url_prefix="/api/v1", description="任务")


@blp.route("/tasks")
class TasksView(MethodView):
    @blp.arguments(schemas.TaskQuery, location="query")
    @blp.response(200, schemas.TaskPage)
    def get(self, query):
        """Tasks: mine (assigned to me), claimable (offered to my groups), all (managers).

        Paged by `page`, or by `cursor` (the previous answer's `next_cursor`) for deep pages.
        """
        with database.unit_of_work() as ctx:
            result = queries.list_tasks(ctx.session, ctx.actor, **query)
            return {
                "items": [present.task(t) for t in result.items],
                "total": result.total,
                "page": result.page,
                "per_page": result.per_page,
                "next_cursor": result.next_cursor,
            }


@blp.route("/tasks/<int:task_id>")
class TaskView(MethodView):
    @blp.response(200, schemas.TaskDetail)
    def get(self, task_id):
        """A task with its form (form-js JSON) and prefill data."""
        with database.unit_of_work() as ctx:
            # The instance stays referenced until the answer is built: the form and the
            # prefill look it up again, and the session holds objects only weakly.
            task, _instance = runtime.task_and_instance(ctx, task_id)
            body = present.task(task)
            body["form"] = runtime.task_form(ctx, task)
            body["data"] = runtime.task_prefill(ctx, task)
            return body


def _task_action(path, operation, request_schema, doc):
    class ActionView(MethodView):
        @blp.arguments(request_schema)
        @blp.response(200, schemas.Task)
        def post(self, body, task_id):
            with database.unit_of_work() as ctx:
                task = operation(ctx, task_id, **body)
            return present.task(task)

    ActionView.post.__doc__ = doc
    ActionView.__name__ = f"{path.title()}View"
    blp.route(f"/tasks/<int:task_id>/{path}")(ActionView)


class NoBody(schemas.StrictBase):
    pass


_task_action("claim", runtime.claim_task, NoBody, "Claim an unassigned task offered to my groups.")
_task_action("unclaim", runtime.unclaim_task, NoBody, "Give a claimed task back to its groups.")
_task_action("assign", runtime.assign_task, schemas.UserRequest, "转办: hand the task to another user.")
_task_action("delegate", runtime.delegate_task, schemas.UserRequest, "委派: it comes back to me when done.")


def _completion(ctx, result) -> dict:
    """The answer of a complete or send-back. Built inside the transaction: whatever it still
    reads (the open tasks, when the engine did not pass them) uses the connection already held,
    not a second checkout after the commit."""
    return {
        "task": present.task(result.task),
        "instance": present.instance(ctx.session, result.instance, open_tasks=result.open_tasks),
        "next_tasks": [present.task(t) for t in result.next_tasks],
    }


@blp.route("/tasks/<int:task_id>/complete")
class CompleteView(MethodView):
    @blp.arguments(schemas.CompleteRequest)
    @blp.response(200, schemas.Completion)
    def post(self, body, task_id):
        """Submit the task's form (validated against it) with an optional opinion."""
        with database.unit_of_work() as ctx:
            result = runtime.complete_task(ctx, task_id, body["data"], body["comment"])
            return _completion(ctx, result)


@blp.route("/tasks/<int:task_id>/send-back")
class SendBackView(MethodView):
    @blp.arguments(schemas.CommentRequest)
    @blp.response(200, schemas.Completion)
    def post(self, body, task_id):
        """退回: return the matter to the previous user task, with a reason."""
        with database.unit_of_work() as ctx:
            result = runtime.send_back(ctx, task_id, body["comment"])
            return _completion(ctx, result)
