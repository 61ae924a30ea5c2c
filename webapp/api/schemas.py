"""Marshmallow schemas of every API request and response (the OpenAPI document comes from them)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from engine.queries import BAD_CURSOR, MAX_CURSOR_LENGTH

from ..input_checks import MAX_ID

# Ids and versions fit the database's integer columns (PostgreSQL int4): a larger value is a
# 422 here, never an overflow in the database driver.
ID_RANGE = validate.Range(min=1, max=MAX_ID)


class Base(Schema):
    class Meta:
        unknown = EXCLUDE
        ordered = True


class StrictBase(Schema):
    """Request bodies: an unknown field is a client mistake worth reporting."""

    class Meta:
        ordered = True


class ApiError(Base):
    error = fields.String(required=True)
    message = fields.String()
    errors = fields.Raw()


class TokenRequest(StrictBase):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=256))


class Token(Base):
    token = fields.String(required=True)
    expires_at = fields.DateTime(required=True)


class Me(Base):
    username = fields.String(required=True)
    display_name = fields.String()
    groups = fields.List(fields.String())
    roles = fields.List(fields.String())


class Health(Base):
    status = fields.String(required=True)
    database = fields.String(required=True)


class Definition(Base):
    key = fields.String(required=True)
    name = fields.String()
    version = fields.Integer(required=True)
    deployed_at = fields.DateTime()
    deployed_by = fields.String(allow_none=True)
    checksum = fields.String()
    start_form = fields.String(allow_none=True)


class DefinitionQuery(StrictBase):
    all_versions = fields.Boolean(load_default=False)


class VersionQuery(StrictBase):
    version = fields.Integer(load_default=None, validate=ID_RANGE)


class DefinitionList(Base):
    items = fields.List(fields.Nested(Definition))


class DeployedDefinition(Base):
    key = fields.String()
    version = fields.Integer()


class DeploymentResult(Base):
    deployment_id = fields.Integer()
    definitions = fields.List(fields.Nested(DeployedDefinition))


class DeploymentForm(StrictBase):
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class StartForm(Base):
    form = fields.Dict(allow_none=True)


class Task(Base):
    id = fields.Integer(required=True)
    name = fields.String()
    element_id = fields.String()
    instance_id = fields.Integer()
    process_key = fields.String()
    business_key = fields.String(allow_none=True)
    subject = fields.String()
    assignee = fields.String(allow_none=True)
    owner = fields.String(allow_none=True)
    candidate_groups = fields.List(fields.String())
    candidate_users = fields.List(fields.String())
    created_at = fields.DateTime()
    due_at = fields.DateTime(allow_none=True)
    sla = fields.String(validate=validate.OneOf(["normal", "warning", "overdue"]))
    status = fields.String(validate=validate.OneOf(["open", "completed", "cancelled"]))
    completed_at = fields.DateTime(allow_none=True)
    completed_by = fields.String(allow_none=True)
    form_key = fields.String(allow_none=True)


class TaskDetail(Task):
    form = fields.Dict(allow_none=True)
    data = fields.Dict()


class HistoryEvent(Base):
    at = fields.DateTime()
    type = fields.String()
    user = fields.String(allow_none=True)
    element_id = fields.String(allow_none=True)
    task_name = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)


class Diagram(Base):
    completed = fields.List(fields.String())
    active = fields.List(fields.String())


class Instance(Base):
    id = fields.Integer(required=True)
    process_key = fields.String()
    version = fields.Integer()
    business_key = fields.String(allow_none=True)
    subject = fields.String()
    status = fields.String(
        validate=validate.OneOf(["running", "waiting", "completed", "terminated", "suspended", "error"])
    )
    started_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    started_by = fields.String(allow_none=True)
    due_at = fields.DateTime(allow_none=True)
    overdue = fields.Boolean()
    tasks = fields.List(fields.Nested(Task))


class InstanceDetail(Instance):
    variables = fields.Dict()
    history = fields.List(fields.Nested(HistoryEvent))
    diagram = fields.Nested(Diagram)


class Page(StrictBase):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class CursorPage(Page):
    """Offset paging (`page`) or keyset paging (`cursor`, from the previous answer's `next_cursor`)."""

    cursor = fields.String(
        validate=validate.Length(min=1, max=MAX_CURSOR_LENGTH, error=BAD_CURSOR),
        metadata={
            "description": "next_cursor of the previous page: continues the list after its last row "
            "(every page as fast as the first); not together with page"
        },
    )

    @validates_schema(pass_original=True)
    def _cursor_or_page(self, data, original_data, **_kwargs):
        if "cursor" in data and "page" in original_data:
            raise ValidationError("cursor 与 page 不能同时使用", field_name="cursor")


class CursorPageResult(Base):
    total = fields.Integer(
        allow_none=True,
        metadata={"description": "matching rows; null on pages asked for by cursor (the first page has it)"},
    )
    page = fields.Integer(allow_none=True, metadata={"description": "null when asked for by cursor"})
    per_page = fields.Integer()
    next_cursor = fields.String(
        allow_none=True, metadata={"description": "cursor of the next page; null on the last page"}
    )


class InstanceQuery(CursorPage):
    process_key = fields.String(validate=validate.Length(max=128))
    status = fields.String(
        validate=validate.OneOf(["running", "waiting", "completed", "terminated", "suspended", "error"])
    )
    business_key = fields.String(validate=validate.Length(max=128))
    overdue = fields.Boolean()


class InstanceList(CursorPageResult):
    items = fields.List(fields.Nested(Instance))


class InstanceCreate(StrictBase):
    process_key = fields.String(required=True, validate=validate.Length(min=1, max=128))
    business_key = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=128))
    variables = fields.Dict(keys=fields.String(), load_default=dict)
    version = fields.Integer(load_default=None, allow_none=True, validate=ID_RANGE)


class MessageRequest(StrictBase):
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    payload = fields.Raw(load_default=None, allow_none=True)


class FireTimersRequest(StrictBase):
    element_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=128))


class ReasonRequest(StrictBase):
    reason = fields.String(load_default="", validate=validate.Length(max=2000))


class TaskQuery(CursorPage):
    scope = fields.String(load_default="mine", validate=validate.OneOf(["mine", "claimable", "all"]))
    process_key = fields.String(validate=validate.Length(max=128))
    instance_id = fields.Integer(validate=ID_RANGE)
    sla = fields.String(validate=validate.OneOf(["overdue", "warning", "normal"]))


class TaskList(Base):
    items = fields.List(fields.Nested(Task))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class TaskPage(CursorPageResult):
    items = fields.List(fields.Nested(Task))


class CompleteRequest(StrictBase):
    data = fields.Dict(keys=fields.String(), load_default=dict)
    comment = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=5000))


class Completion(Base):
    task = fields.Nested(Task)
    instance = fields.Nested(Instance)
    next_tasks = fields.List(fields.Nested(Task))


class UserRequest(StrictBase):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    comment = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=5000))


class CommentRequest(StrictBase):
    comment = fields.String(required=True, validate=validate.Length(max=5000))


class CreditQuery(Page):
    status = fields.String(
        validate=validate.OneOf(
            ["published", "under_objection", "corrected", "revoked", "repaired", "expired"]
        )
    )
    severity = fields.String(validate=validate.OneOf(["minor", "general", "serious"]))
    subject = fields.String(validate=validate.Length(max=128))


class PublicCreditQuery(Page):
    subject = fields.String(validate=validate.Length(max=128))


class CreditHistoryEntry(Base):
    at = fields.String()
    user = fields.String(allow_none=True)
    from_status = fields.String(allow_none=True)
    to_status = fields.String()
    reason = fields.String(allow_none=True)
    instance_id = fields.Integer(allow_none=True)


class PublicCreditRecord(Base):
    id = fields.Integer()
    subject_type = fields.String()
    subject_name = fields.String()
    subject_code = fields.String()
    category = fields.String()
    severity = fields.String()
    doc_no = fields.String()
    decided_at = fields.String()
    facts = fields.String()
    status = fields.String()
    disclosure_start = fields.String(allow_none=True)
    repairable_from = fields.String(allow_none=True)
    disclosure_end = fields.String(allow_none=True)
    correction = fields.Dict(allow_none=True)


class CreditRecord(PublicCreditRecord):
    history = fields.List(fields.Nested(CreditHistoryEntry))


class CreditRecordList(Base):
    items = fields.List(fields.Nested(CreditRecord))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class PublicCreditRecordList(CreditRecordList):
    items = fields.List(fields.Nested(PublicCreditRecord))


def _year_1900_to_2200(value):
    return validate.Range(min=1900, max=2200, error="日期应在 1900 至 2200 年之间")(value.year)


class AddWorkdaysQuery(StrictBase):
    start = fields.Date(required=True, validate=_year_1900_to_2200)
    days = fields.Integer(
        required=True, validate=validate.Range(min=-3650, max=3650, error="天数应在 -3650 至 3650 之间")
    )


class AddWorkdays(Base):
    start = fields.Date(required=True)
    days = fields.Integer(required=True)
    date = fields.Date(required=True)


class CalendarYear(Base):
    year = fields.Integer(required=True)
    source = fields.String(required=True, validate=validate.OneOf(["chinese-calendar", "file", "fallback"]))
    holidays = fields.List(fields.String(metadata={"format": "date"}))
    workdays = fields.List(fields.String(metadata={"format": "date"}))
    warning = fields.String()


# --- monitoring (managers) ----------------------------------------------------------------

INSTANCE_STATUSES = ["running", "waiting", "completed", "terminated", "suspended", "error"]


class ProcessStats(Base):
    name = fields.String()
    instances_by_status = fields.Dict(keys=fields.String(), values=fields.Integer())
    open_tasks = fields.Integer()
    overdue_tasks = fields.Integer()
    warning_tasks = fields.Integer()
    overdue_instances = fields.Integer()


class StatsSummary(Base):
    instances_by_status = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    open_tasks = fields.Integer(required=True)
    overdue_tasks = fields.Integer(required=True)
    warning_tasks = fields.Integer()
    overdue_instances = fields.Integer()
    by_process = fields.Dict(keys=fields.String(), values=fields.Nested(ProcessStats), required=True)


class OpenInstancesBar(Base):
    process_key = fields.String()
    status = fields.String()
    count = fields.Integer()
    overdue = fields.Integer()


class GroupLateness(Base):
    group = fields.String()
    title = fields.String()
    overdue = fields.Integer()
    warning = fields.Integer()


class PersonLateness(Base):
    username = fields.String()
    display_name = fields.String()
    overdue = fields.Integer()
    warning = fields.Integer()


class WeekThroughput(Base):
    week = fields.Date()
    started = fields.Integer()
    finished = fields.Integer()


class StepDuration(Base):
    process_key = fields.String()
    element_id = fields.String()
    name = fields.String(allow_none=True)
    count = fields.Integer()
    median_days = fields.Integer(allow_none=True)
    p90_days = fields.Integer(allow_none=True)


class CreditCount(Base):
    status = fields.String()
    severity = fields.String()
    count = fields.Integer()


class Dashboard(Base):
    generated_at = fields.DateTime()
    window_start = fields.Date()
    processes = fields.Dict(keys=fields.String(), values=fields.String())
    open_instances = fields.List(fields.Nested(OpenInstancesBar))
    tasks_by_group = fields.List(fields.Nested(GroupLateness))
    tasks_by_person = fields.List(fields.Nested(PersonLateness))
    weeks = fields.List(fields.Nested(WeekThroughput))
    step_durations = fields.List(fields.Nested(StepDuration))
    credit = fields.List(fields.Nested(CreditCount))
    totals = fields.Dict(keys=fields.String(), values=fields.Integer())


class MonitorInstanceQuery(Page):
    process_key = fields.String(validate=validate.Length(max=128))
    version = fields.Integer(validate=ID_RANGE)
    status = fields.String(validate=validate.OneOf(INSTANCE_STATUSES))
    started_by = fields.String(validate=validate.Length(max=64))
    started_from = fields.Date()
    started_to = fields.Date()
    ended_from = fields.Date()
    ended_to = fields.Date()
    overdue = fields.Boolean()
    business_key = fields.String(validate=validate.Length(max=128))
    subject = fields.String(validate=validate.Length(max=128))
    columns = fields.String(validate=validate.Length(max=500), metadata={"description": "comma-separated"})


class MonitorExportQuery(MonitorInstanceQuery):
    format = fields.String(load_default="xlsx", validate=validate.OneOf(["xlsx", "csv"]))


class MonitorInstance(Instance):
    cells = fields.Dict(keys=fields.String(), values=fields.Raw())


class MonitorInstanceList(Base):
    items = fields.List(fields.Nested(MonitorInstance))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()
    columns = fields.List(fields.String())


class MonitorTaskQuery(Page):
    group = fields.String(validate=validate.Length(max=64))
    assignee = fields.String(validate=validate.Length(max=64))
    sla = fields.String(validate=validate.OneOf(["overdue", "warning"]))
    process_key = fields.String(validate=validate.Length(max=128))
    element_id = fields.String(validate=validate.Length(max=128))
    status = fields.String(load_default="open", validate=validate.OneOf(["open", "completed", "cancelled"]))
    completed_from = fields.Date()


class HeatmapQuery(StrictBase):
    version = fields.Integer(load_default=None, validate=ID_RANGE)
    started_from = fields.Date(load_default=None)
    started_to = fields.Date(load_default=None)


class HeatElement(Base):
    count = fields.Integer()
    completed = fields.Integer()
    avg_hours = fields.Float(allow_none=True)
    open = fields.Integer()
    overdue = fields.Integer()


class ViewerState(Base):
    completed = fields.List(fields.String())
    active = fields.List(fields.String())
    overdue = fields.List(fields.String())
    counts = fields.Dict(keys=fields.String(), values=fields.Dict())


class Heatmap(Base):
    process_key = fields.String()
    version = fields.Integer()
    name = fields.String()
    instances = fields.Integer()
    instances_by_status = fields.Dict(keys=fields.String(), values=fields.Integer())
    elements = fields.Dict(keys=fields.String(), values=fields.Nested(HeatElement))
    state = fields.Nested(ViewerState)


class LedgerQuery(StrictBase):
    date_from = fields.Date(required=True, data_key="from")
    date_to = fields.Date(required=True, data_key="to")
    format = fields.String(load_default="xlsx", validate=validate.OneOf(["xlsx", "csv"]))


class AuditBreak(Base):
    event_id = fields.Integer()
    problem = fields.String()


class AuditReport(Base):
    instance_id = fields.Integer()
    events = fields.Integer()
    ok = fields.Boolean()
    breaks = fields.List(fields.Nested(AuditBreak))


class UrgeRequest(StrictBase):
    message = fields.String(load_default="", validate=validate.Length(max=500))


class UrgeResult(Base):
    urged = fields.Integer()
    task_ids = fields.List(fields.Integer())


class SavedView(Base):
    id = fields.Integer()
    name = fields.String()
    filters = fields.Dict(keys=fields.String(), values=fields.String())
    columns = fields.List(fields.String())
    updated_at = fields.DateTime()


class SavedViewList(Base):
    items = fields.List(fields.Nested(SavedView))


class SavedViewRequest(StrictBase):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    filters = fields.Dict(keys=fields.String(), load_default=dict)
    columns = fields.List(fields.String(), load_default=list)


# --- studio (analysts) -------------------------------------------------------------------------


class StudioVersion(Base):
    version = fields.Integer(required=True)
    deployed_at = fields.DateTime()
    deployed_by = fields.String(allow_none=True)
    checksum = fields.String()
    note = fields.String()
    instances = fields.Dict(keys=fields.String(), values=fields.Integer())
    active_instances = fields.Integer()
    total_instances = fields.Integer()
    in_repository = fields.Boolean(allow_none=True)
    missing_files = fields.List(fields.String())


class StudioProcess(Base):
    key = fields.String(required=True)
    name = fields.String()
    versions = fields.List(fields.Nested(StudioVersion))


class StudioProcessList(Base):
    items = fields.List(fields.Nested(StudioProcess))


class StudioFile(Base):
    name = fields.String()
    kind = fields.String()
    checksum = fields.String()


class StudioFileList(Base):
    items = fields.List(fields.Nested(StudioFile))


class StudioDiffQuery(StrictBase):
    from_version = fields.Integer(load_default=None, validate=ID_RANGE)
    to_version = fields.Integer(load_default=None, validate=ID_RANGE)


class StudioElementChange(Base):
    element_id = fields.String()
    type = fields.String()
    name = fields.String()
    aspects = fields.List(fields.String())


class StudioDiff(Base):
    key = fields.String()
    from_version = fields.Integer()
    to_version = fields.Integer()
    added = fields.List(fields.Nested(StudioElementChange))
    removed = fields.List(fields.Nested(StudioElementChange))
    changed = fields.List(fields.Nested(StudioElementChange))
    forms_changed = fields.List(fields.String())


class StudioDraftSummary(Base):
    kind = fields.String()
    key = fields.String()
    username = fields.String()
    revision = fields.Integer()
    base_version = fields.Integer(allow_none=True)
    status = fields.String()
    updated_at = fields.DateTime()


class StudioDraft(StudioDraftSummary):
    content = fields.String()


class StudioDraftState(Base):
    draft = fields.Nested(StudioDraft, allow_none=True)
    latest_revision = fields.Integer()
    others = fields.List(fields.Nested(StudioDraftSummary))


class StudioDraftSave(StrictBase):
    content = fields.String(required=True)
    base_revision = fields.Integer(required=True, validate=validate.Range(min=0, max=MAX_ID))
    base_version = fields.Integer(load_default=None, allow_none=True, validate=ID_RANGE)


class StudioValidateRequest(StrictBase):
    xml = fields.String(load_default=None, allow_none=True)


class StudioDeployRequest(StrictBase):
    note = fields.String(required=True, validate=validate.Length(max=2000))
    xml = fields.String(load_default=None, allow_none=True)
    base_version = fields.Integer(load_default=None, allow_none=True, validate=ID_RANGE)


class StudioCandidate(Base):
    key = fields.String()
    name = fields.String()
    checksum = fields.String()


class StudioValidation(Base):
    valid = fields.Boolean()
    definitions = fields.List(fields.Nested(StudioCandidate))


class StudioMigrationQuery(StrictBase):
    from_version = fields.Integer(required=True, validate=ID_RANGE)
    to_version = fields.Integer(load_default=None, validate=ID_RANGE)


class StudioActiveElement(Base):
    element_id = fields.String()
    name = fields.String()
    type = fields.String()


class StudioInstancePlan(Base):
    instance_id = fields.Integer()
    business_key = fields.String(allow_none=True)
    subject = fields.String()
    status = fields.String()
    version = fields.Integer()
    can_move = fields.Boolean()
    reasons = fields.List(fields.String())
    active = fields.List(fields.Nested(StudioActiveElement))
    changes = fields.List(fields.String())


class StudioMigrationPlan(Base):
    key = fields.String()
    from_version = fields.Integer()
    to_version = fields.Integer()
    diff = fields.Nested(StudioDiff)
    instances = fields.List(fields.Nested(StudioInstancePlan))


class StudioMigrateRequest(StrictBase):
    instance_ids = fields.List(
        fields.Integer(validate=ID_RANGE),
        required=True,
        validate=validate.Length(min=1, max=500),
    )
    to_version = fields.Integer(load_default=None, allow_none=True, validate=ID_RANGE)


class StudioMigrationOutcome(Base):
    instance_id = fields.Integer()
    migrated = fields.Boolean()
    reasons = fields.List(fields.String())
    from_version = fields.Integer(allow_none=True)
    to_version = fields.Integer(allow_none=True)


class StudioMigrationResult(Base):
    items = fields.List(fields.Nested(StudioMigrationOutcome))


class StudioReportItem(Base):
    severity = fields.String(validate=validate.OneOf(["error", "warning", "info"]))
    message = fields.String()
    element_id = fields.String(allow_none=True)
    element_type = fields.String(allow_none=True)
    name = fields.String()
    line = fields.Integer(allow_none=True)


class StudioImport(Base):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    checksum = fields.String()
    exporter = fields.String()
    executable = fields.Boolean()
    deployable = fields.Boolean()
    has_diagram = fields.Boolean()
    process_ids = fields.List(fields.String())
    imported_by = fields.String(allow_none=True)
    imported_at = fields.DateTime()
    report = fields.List(fields.Nested(StudioReportItem))


class StudioImportList(Base):
    items = fields.List(fields.Nested(StudioImport))


class StudioOpenDraft(StrictBase):
    key = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=128))


class StudioRepositoryVersion(Base):
    key = fields.String()
    version = fields.Integer()
    missing_files = fields.List(fields.String())


class StudioRepository(Base):
    path = fields.String(allow_none=True)
    not_in_repository = fields.List(fields.Nested(StudioRepositoryVersion))


# --- user and group administration (admins) -------------------------------------------------

_GROUP_KEY = validate.Regexp(
    r"^[a-z][a-z0-9_]{1,63}$", error="标识以小写字母开头，只含小写字母、数字和下划线"
)


class AdminUser(Base):
    username = fields.String(required=True)
    display_name = fields.String()
    email = fields.String(allow_none=True)
    active = fields.Boolean(required=True)
    groups = fields.List(fields.String(), required=True)
    created_at = fields.DateTime(allow_none=True)
    open_tasks = fields.Integer()


class AdminUserList(Base):
    items = fields.List(fields.Nested(AdminUser), required=True)


class AdminUserCreate(StrictBase):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=6, max=256))
    display_name = fields.String(load_default="", validate=validate.Length(max=128))
    email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=256))
    groups = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=list)


class AdminDisabled(Base):
    user = fields.Nested(AdminUser, required=True)
    released_tasks = fields.List(fields.Integer(), required=True)


class AdminPasswordReset(StrictBase):
    password = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=6, max=256))


class AdminPasswordResult(Base):
    username = fields.String(required=True)
    # Only when the server generated it: shown once, to hand to the user.
    password = fields.String(allow_none=True)


class AdminUserGroups(StrictBase):
    groups = fields.List(fields.String(validate=validate.Length(min=1, max=64)), required=True)


class AdminGroup(Base):
    name = fields.String(required=True)
    title = fields.String(required=True)
    members = fields.List(fields.String(), required=True)


class AdminGroupList(Base):
    items = fields.List(fields.Nested(AdminGroup), required=True)


class AdminGroupCreate(StrictBase):
    name = fields.String(required=True, validate=_GROUP_KEY)
    title = fields.String(required=True, validate=validate.Length(min=1, max=128))


class AdminGroupRename(StrictBase):
    title = fields.String(required=True, validate=validate.Length(min=1, max=128))
