"""Process instances: start, list, detail, messages, timers, suspend/resume/terminate."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from engine import queries, runtime

from .. import database
from . import present, schemas

blp = Blueprint("instances", __name__, url_prefix="/api/v1", description="流程实例")


def _detail(ctx, instance) -> dict:
    body = present.instance(ctx.session, instance)
    body["variables"] = runtime.instance_variables(ctx, instance)
    body["history"] = [present.event(e) for e in queries.history_of(ctx.session, instance.id)]
    body["diagram"] = runtime.instance_diagram(ctx, instance)
    return body


@blp.route("/process-instances")
class InstancesView(MethodView):
    @blp.arguments(schemas.InstanceCreate)
    @blp.response(201, schemas.Instance)
    def post(self, body):
        """Start an instance; `variables` are the start form's data, validated like a task's."""
        with database.unit_of_work() as ctx:
            instance = runtime.start_instance(
                ctx,
                body["process_key"],
                business_key=body["business_key"],
                variables=body["variables"],
                version=body["version"],
            )
            # Inside the transaction: its open tasks are read on the connection already held.
            return present.instance(ctx.session, instance)

    @blp.arguments(schemas.InstanceQuery, location="query")
    @blp.response(200, schemas.InstanceList)
    def get(self, query):
        """Instances visible to the caller, filtered and paginated by `page` or by `cursor`."""
        with database.unit_of_work() as ctx:
            result = queries.list_instances(ctx.session, ctx.actor, **query)
            return {
                "items": _listed(ctx.session, result.items),
                "total": result.total,
                "page": result.page,
                "per_page": result.per_page,
                "next_cursor": result.next_cursor,
            }


def _listed(session, instances) -> list[dict]:
    """The page's instances with their open tasks, loaded in one query for the whole page."""
    open_tasks = queries.open_tasks_by_instance(session, [i.id for i in instances])
    return [present.instance(session, i, open_tasks=open_tasks[i.id]) for i in instances]


@blp.route("/process-instances/<int:instance_id>")
class InstanceView(MethodView):
    @blp.response(200, schemas.InstanceDetail)
    def get(self, instance_id):
        """An instance with variables, open tasks, history and diagram state."""
        with database.unit_of_work() as ctx:
            return _detail(ctx, runtime.get_instance(ctx, instance_id))


@blp.route("/process-instances/<int:instance_id>/messages")
class MessagesView(MethodView):
    @blp.arguments(schemas.MessageRequest)
    @blp.response(200, schemas.InstanceDetail)
    def post(self, body, instance_id):
        """Deliver a message the instance waits for (409 when nothing waits for it)."""
        with database.unit_of_work() as ctx:
            instance = runtime.send_message(ctx, instance_id, body["name"], body["payload"])
        return _detail(ctx, instance)


@blp.route("/process-instances/<int:instance_id>/timers/fire")
class FireTimersView(MethodView):
    @blp.arguments(schemas.FireTimersRequest)
    @blp.response(200, schemas.InstanceDetail)
    def post(self, body, instance_id):
        """Fire the instance's waiting timers now (managers and admins; audited)."""
        with database.unit_of_work() as ctx:
            instance = runtime.fire_timers(ctx, instance_id, body["element_id"])
        return _detail(ctx, instance)


def _lifecycle(name, operation, doc):
    class LifecycleView(MethodView):
        @blp.arguments(schemas.ReasonRequest)
        @blp.response(200, schemas.InstanceDetail)
        def post(self, body, instance_id):
            with database.unit_of_work() as ctx:
                instance = operation(ctx, instance_id, body["reason"])
            return _detail(ctx, instance)

    LifecycleView.post.__doc__ = doc
    LifecycleView.__name__ = f"{name.title()}View"
    blp.route(f"/process-instances/<int:instance_id>/{name}")(LifecycleView)


_lifecycle("suspend", runtime.suspend_instance, "Suspend an instance (managers).")
_lifecycle("resume", runtime.resume_instance, "Resume a suspended instance (managers).")
_lifecycle("terminate", runtime.terminate_instance, "Terminate an instance; a reason is required (managers).")
