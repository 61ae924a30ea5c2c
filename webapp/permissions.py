"""Who may call what: one rule per Flask endpoint, checked in one place for pages and the API.

`RULES` maps every endpoint name to one of:

- PUBLIC   — anyone, signed in or not;
- LOGIN    — any active user (the staff role every user has);
- ANALYST  — the analysts or admins group;
- MANAGER  — the managers or admins group;
- ADMIN    — the admins group;
- OWN_CHECK — the view authenticates the caller itself, by other means than a user
  (documented next to the rule).

The gate (`check_request`) runs before every request. Callers of the API (paths under /api/)
identify with a bearer token; pages and the studio's fetch endpoints with the session cookie.
Refusals: the API and fetch endpoints answer JSON 401 (no or bad credentials) or 403; pages
send strangers to the login page and answer the 403 page to signed-in users.

An endpoint missing from the table is refused to everyone (fail closed), and
tests/webapp/test_permission_matrix.py fails until it gets a rule.

Rules about one object — a task is visible to its assignee, candidates and managers; an
instance to its participants and managers; who may start which process — stay in `engine`
(engine.access, engine.runtime, engine.worklist), which raise NotAllowed/NotFound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, redirect, request, url_for
from flask_babel import gettext as _

from engine.users import actor_for

from .auth import current_user
from .errors import error_body
from .pages import error_page
from .pages.session import current_page_user

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    name: str
    roles: frozenset[str] = frozenset()  # any of these roles; empty = any signed-in user
    public: bool = False
    own_check: bool = False

    def allows(self, roles: frozenset[str]) -> bool:
        return not self.roles or bool(self.roles & roles)


PUBLIC = Rule("public", public=True)
OWN_CHECK = Rule("own_check", public=True, own_check=True)
LOGIN = Rule("login")
ANALYST = Rule("analyst", frozenset({"analyst", "admin"}))
MANAGER = Rule("manager", frozenset({"manager", "admin"}))
ADMIN = Rule("admin", frozenset({"admin"}))

RULES: dict[str, Rule] = {
    # --- infrastructure
    "static": PUBLIC,
    "api-docs.openapi_json": PUBLIC,
    # Loopback without proxy headers, CHENGXIN_METRICS_TOKEN, or a managers'/admins' token
    # (webapp/metrics.py): Prometheus scrapes it without a user.
    "metrics": OWN_CHECK,
    # --- API: identity and health
    "auth.TokenView": PUBLIC,
    "auth.HealthView": PUBLIC,
    "auth.MeView": LOGIN,
    # --- API: definitions and deployments
    "definitions.DefinitionsView": LOGIN,
    "definitions.DefinitionXmlView": LOGIN,
    "definitions.StartFormView": LOGIN,
    "definitions.DeploymentsView": ANALYST,
    # --- API: instances (which instance: engine.runtime.can_see_instance)
    "instances.InstancesView": LOGIN,
    "instances.InstanceView": LOGIN,
    "instances.MessagesView": LOGIN,
    "instances.FireTimersView": MANAGER,
    "instances.SuspendView": MANAGER,
    "instances.ResumeView": MANAGER,
    "instances.TerminateView": MANAGER,
    # --- API: tasks (which task: engine.access.can_see_task and the runtime's holder checks)
    "tasks.TasksView": LOGIN,
    "tasks.TaskView": LOGIN,
    "tasks.ClaimView": LOGIN,
    "tasks.UnclaimView": LOGIN,
    "tasks.AssignView": LOGIN,
    "tasks.DelegateView": LOGIN,
    "tasks.CompleteView": LOGIN,
    "tasks.SendBackView": LOGIN,
    # --- API: credit archive and calendar
    "credit.CreditRecordsView": LOGIN,
    "credit.CreditRecordView": LOGIN,
    "credit.PublicCreditRecordsView": PUBLIC,
    "calendar.AddWorkdaysView": LOGIN,
    "calendar.CalendarYearView": LOGIN,
    # --- API: monitoring
    "monitoring.SummaryView": MANAGER,
    "monitoring.DashboardView": MANAGER,
    "monitoring.MonitorInstancesView": MANAGER,
    "monitoring.MonitorExportView": MANAGER,
    "monitoring.MonitorTasksView": MANAGER,
    "monitoring.HeatmapView": MANAGER,
    "monitoring.LedgerView": MANAGER,
    "monitoring.AuditView": MANAGER,
    "monitoring.UrgeView": MANAGER,
    "monitoring.SavedViewsView": MANAGER,
    "monitoring.SavedViewView": MANAGER,
    # --- API: studio
    "studio.ProcessesView": ANALYST,
    "studio.ProcessView": ANALYST,
    "studio.VersionFilesView": ANALYST,
    "studio.VersionFileView": ANALYST,
    "studio.ExportView": ANALYST,
    "studio.DiffView": ANALYST,
    "studio.DraftView": ANALYST,
    "studio.ValidateBundleView": ANALYST,
    "studio.ValidateProcessView": ANALYST,
    "studio.DeployProcessView": ANALYST,
    "studio.MigrationView": ANALYST,
    "studio.RepositoryView": ANALYST,
    "studio.ImportsView": ANALYST,
    "studio.ImportView": ANALYST,
    "studio.ImportContentView": ANALYST,
    "studio.ImportDraftView": ANALYST,
    # --- API: user and group administration
    "admin.UsersView": ADMIN,
    "admin.UserView": ADMIN,
    "admin.DisableUserView": ADMIN,
    "admin.EnableUserView": ADMIN,
    "admin.PasswordView": ADMIN,
    "admin.UserGroupsView": ADMIN,
    "admin.GroupsView": ADMIN,
    "admin.GroupView": ADMIN,
    # --- pages: sign-in
    "pages.auth.login": PUBLIC,
    "pages.auth.logout": LOGIN,
    "pages.auth.language": PUBLIC,
    # --- pages: workspace (which task or process: engine.worklist and engine.runtime)
    "pages.inbox.home": LOGIN,
    "pages.inbox.index": LOGIN,
    "pages.start.index": LOGIN,
    "pages.start.form": LOGIN,
    "pages.start.submit": LOGIN,
    "pages.tasks.show": LOGIN,
    "pages.tasks.complete": LOGIN,
    "pages.tasks.upload": LOGIN,
    "pages.tasks.download": LOGIN,
    "pages.tasks.claim": LOGIN,
    "pages.tasks.unclaim": LOGIN,
    "pages.tasks.assign": LOGIN,
    "pages.tasks.delegate": LOGIN,
    "pages.tasks.send_back": LOGIN,
    "pages.tasks.urge": LOGIN,
    "pages.tasks.copy": LOGIN,
    "pages.notices.index": LOGIN,
    "pages.notices.unread_count": LOGIN,
    "pages.notices.open_one": LOGIN,
    "pages.notices.mark_read": LOGIN,
    # --- pages: monitoring
    "pages.monitor.dashboard": MANAGER,
    "pages.monitor.instances": MANAGER,
    "pages.monitor.export": MANAGER,
    "pages.monitor.save_view": MANAGER,
    "pages.monitor.delete_view": MANAGER,
    "pages.monitor.tasks": MANAGER,
    "pages.monitor.instance": MANAGER,
    "pages.monitor.lifecycle": MANAGER,
    "pages.monitor.urge": MANAGER,
    "pages.monitor.definition_xml": MANAGER,
    "pages.monitor.heatmap": MANAGER,
    "pages.monitor.ledgers_page": MANAGER,
    "pages.monitor.ledger_download": MANAGER,
    "pages.monitor.credit_list": MANAGER,
    # --- pages: studio, and the fetch endpoints of its editors (JSON/XML answers)
    "pages.studio.index": ANALYST,
    "pages.studio.new_process": ANALYST,
    "pages.studio.process": ANALYST,
    "pages.studio.version": ANALYST,
    "pages.studio.diff": ANALYST,
    "pages.studio.edit": ANALYST,
    "pages.studio.discard": ANALYST,
    "pages.studio.form_list": ANALYST,
    "pages.studio.form_editor": ANALYST,
    "pages.studio.import_list": ANALYST,
    "pages.studio.import_detail": ANALYST,
    "pages.studio.import_as_draft": ANALYST,
    "pages.studio.migrate": ANALYST,
    "studio_xhr.version_xml": ANALYST,
    "studio_xhr.export": ANALYST,
    "studio_xhr.source": ANALYST,
    "studio_xhr.save_draft": ANALYST,
    "studio_xhr.validate": ANALYST,
    "studio_xhr.deploy": ANALYST,
    "studio_xhr.script": ANALYST,
    "studio_xhr.import_content": ANALYST,
    # --- pages: user and group administration
    "pages.admin.index": ADMIN,
    "pages.admin.users": ADMIN,
    "pages.admin.create_user": ADMIN,
    "pages.admin.user": ADMIN,
    "pages.admin.disable_user": ADMIN,
    "pages.admin.enable_user": ADMIN,
    "pages.admin.reset_password": ADMIN,
    "pages.admin.set_groups": ADMIN,
    "pages.admin.groups": ADMIN,
    "pages.admin.create_group": ADMIN,
    "pages.admin.rename_group": ADMIN,
}


def rule_for(endpoint: str | None) -> Rule | None:
    """The rule of an endpoint; None when it has none (refused)."""
    return RULES.get(endpoint) if endpoint else None


def uses_token(path: str) -> bool:
    """The API authenticates by bearer token; everything else by the session cookie."""
    return path.startswith("/api/")


def answers_json(endpoint: str, path: str) -> bool:
    """The API and the studio's fetch endpoints answer JSON; the workspace pages answer HTML."""
    return uses_token(path) or not endpoint.startswith("pages.")


def _caller():
    return current_user() if uses_token(request.path) else current_page_user()


def _refuse(status: int, message: str):
    if answers_json(request.endpoint or "", request.path):
        response = error_body(status, "unauthorized" if status == 401 else "forbidden", message)
        if status == 401 and uses_token(request.path):
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    if status == 401:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("pages.auth.login", next=target))
    return error_page(403, _("无权操作"), message)


def check_request():
    """The gate: None to let the request through, else the refusal (401/redirect, 403)."""
    endpoint = request.endpoint
    if endpoint is None:  # no route matched: the 404/405 handlers answer
        return None
    rule = rule_for(endpoint)
    if rule is None:
        log.error("endpoint %s has no permission rule in webapp/permissions.py; refused", endpoint)
        return _refuse(403, _("该功能尚未配置访问权限"))
    if rule.public:
        return None
    user = _caller()
    if user is None:
        return _refuse(401, _("需要登录"))
    if not rule.allows(actor_for(user).roles):
        return _refuse(403, _("您没有权限访问该功能"))
    return None


def init_app(app: Flask) -> None:
    """Run the gate before every other before-request hook (CSRF included)."""
    app.before_request_funcs.setdefault(None, []).insert(0, check_request)
    app.extensions["chengxin"]["permissions"] = RULES
