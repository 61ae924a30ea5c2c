"""Attachments: files kept in the file store (a directory), referenced by id from task data.

Task data stays small: a form's filepicker field holds attachment ids, the bytes live
under `<instance_dir>/files/<id[:2]>/<id>`. Only whitelisted types are accepted, checked by
extension and by the file's first bytes.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from . import audit
from .config import Settings
from .db import Base, utcnow
from .errors import NotFound, TooLarge, ValidationFailed
from .models import ProcessInstance

MAX_BYTES = 20 * 1024 * 1024
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy Office (doc, xls)
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")  # zip containers: docx, xlsx, ofd, zip
# extension -> (content type served back, accepted leading bytes)
ALLOWED_TYPES: dict[str, tuple[str, tuple[bytes, ...]]] = {
    "pdf": ("application/pdf", (b"%PDF-",)),
    "jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    "doc": ("application/msword", (_OLE,)),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", _ZIP),
    "xls": ("application/vnd.ms-excel", (_OLE,)),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", _ZIP),
    "ofd": ("application/ofd", _ZIP),
    "zip": ("application/zip", _ZIP),
}
_CHUNK = 64 * 1024


class Attachment(Base):
    """One stored file; `instance_id` is empty until the start form that uploaded it succeeds."""

    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("process_instances.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[int | None] = mapped_column(Integer, index=True)
    field: Mapped[str | None] = mapped_column(String(128))  # the filepicker it belongs to
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)


def store_dir(settings: Settings) -> Path:
    return Path(settings.instance_dir) / "files"


def _path(settings: Settings, attachment_id: str) -> Path:
    return store_dir(settings) / attachment_id[:2] / attachment_id


def _clean_filename(name: str) -> str:
    """The user's file name without directories or control characters, at most 200 characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] != "C")
    name = name.strip().lstrip(".")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 200 - len(ext) - 1] + dot + ext) if dot else name[:200]
    return name


def _extension(filename: str) -> str:
    return filename.rpartition(".")[2].lower() if "." in filename else ""


def allowed_extensions() -> list[str]:
    return sorted(ALLOWED_TYPES)


def _write(stream: BinaryIO, target: Path, max_bytes: int) -> tuple[int, str, bytes]:
    """Copy the stream to `target` (via a temporary name); (size, sha256, first bytes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with open(partial, "wb") as out:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"附件不能超过 {max_bytes // (1024 * 1024)} MB")
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                digest.update(chunk)
                out.write(chunk)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest(), head


@dataclass
class UploadBatch:
    """Files written during one unit of work, removed again if that work fails."""

    settings: Settings
    written: list[Path] = field(default_factory=list)

    def save(
        self,
        session,
        user: str,
        stream: BinaryIO,
        filename: str,
        *,
        instance_id: int | None = None,
        task_id: int | None = None,
        field: str | None = None,
        max_bytes: int = MAX_BYTES,
    ) -> Attachment:
        """Store one upload. Raises ValidationFailed (no name, type not allowed, empty), TooLarge."""
        name = _clean_filename(filename)
        kind = ALLOWED_TYPES.get(_extension(name))
        if not name:
            raise ValidationFailed({"files": ["请选择要上传的文件"]})
        if kind is None:
            allowed = "、".join(allowed_extensions())
            raise ValidationFailed({"files": [f"不支持的文件类型：{name}（允许：{allowed}）"]})
        attachment_id = secrets.token_hex(16)
        target = _path(self.settings, attachment_id)
        size, sha256, head = _write(stream, target, max_bytes)
        self.written.append(target)
        content_type, magics = kind
        if size == 0:
            raise ValidationFailed({"files": [f"文件 {name} 是空文件"]})
        if not any(head.startswith(m) for m in magics):
            raise ValidationFailed({"files": [f"文件 {name} 的内容与扩展名不符"]})
        row = Attachment(
            id=attachment_id,
            instance_id=instance_id,
            task_id=task_id,
            field=field,
            filename=name,
            content_type=content_type,
            size=size,
            sha256=sha256,
            uploaded_by=user,
        )
        session.add(row)
        session.flush()
        if instance_id is not None:
            _record_added(session, row)
        return row

    def discard(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()


@contextmanager
def upload_batch(settings: Settings):
    """Yield an UploadBatch; if the block raises, the files it wrote are deleted."""
    batch = UploadBatch(settings)
    try:
        yield batch
    except BaseException:
        batch.discard()
        raise


def _record_added(session, row: Attachment) -> None:
    audit.record_event(
        session,
        "attachment_added",
        user=row.uploaded_by,
        instance_id=row.instance_id,
        task_id=row.task_id,
        details={"attachment_id": row.id, "filename": row.filename, "size": row.size},
    )


def link_to_instance(session, rows: list[Attachment], instance_id: int, task_id: int | None = None) -> None:
    """Give start-form uploads the instance they now belong to (audited)."""
    for row in rows:
        row.instance_id = instance_id
        row.task_id = task_id
        _record_added(session, row)
    session.flush()


def of_instance(session, instance_id: int) -> list[Attachment]:
    return list(
        session.scalars(
            select(Attachment)
            .where(Attachment.instance_id == instance_id)
            .order_by(Attachment.uploaded_at, Attachment.id)
        )
    )


def of_task(session, task_id: int) -> list[Attachment]:
    return list(
        session.scalars(
            select(Attachment)
            .where(Attachment.task_id == task_id)
            .order_by(Attachment.uploaded_at, Attachment.id)
        )
    )


def open_for_download(ctx, attachment_id: str) -> tuple[Attachment, Path]:
    """The attachment and its file, if the actor may see its instance. Raises NotFound."""
    from .worklist import can_view_instance

    row = ctx.session.get(Attachment, attachment_id)
    if row is None:
        raise NotFound("附件不存在")
    if row.instance_id is None:
        visible = row.uploaded_by == ctx.actor.username
    else:
        instance = ctx.session.get(ProcessInstance, row.instance_id)
        visible = instance is not None and can_view_instance(ctx, instance)
    path = _path(ctx.settings, row.id)
    if not visible or not path.is_file():
        raise NotFound("附件不存在")
    return row, path


# --- filepicker fields -------------------------------------------------------------------


@dataclass(frozen=True)
class FilePicker:
    key: str
    label: str
    multiple: bool
    required: bool


def filepickers(form: dict | None) -> list[FilePicker]:
    """The form's top-level filepicker fields (inside groups without a data path too)."""
    found: list[FilePicker] = []

    def walk(components):
        for c in components or []:
            if not isinstance(c, dict):
                continue
            if c.get("type") == "filepicker" and c.get("key"):
                required = bool((c.get("validate") or {}).get("required")) and not c.get("conditional")
                found.append(
                    FilePicker(c["key"], c.get("label") or c["key"], bool(c.get("multiple")), required)
                )
            elif c.get("type") == "group" and not c.get("path"):
                walk(c.get("components"))

    walk((form or {}).get("components"))
    return found


def without_filepickers(form: dict | None) -> dict | None:
    """The form for the browser: files are uploaded by the page's own attachment box instead."""
    from .worklist import prune_components

    if form is None:
        return None
    return prune_components(form, lambda c: c.get("type") == "filepicker")


def fill_filepickers(form: dict | None, data: dict, rows: list[Attachment]) -> dict:
    """`data` with each filepicker field set to the ids of its attachments.

    A file uploaded without naming a field goes to the form's first filepicker.
    """
    pickers = filepickers(form)
    if not pickers:
        return data
    filled = {k: v for k, v in data.items() if k not in {p.key for p in pickers}}
    for picker in pickers:
        ids = [r.id for r in rows if r.field == picker.key or (r.field is None and picker is pickers[0])]
        if ids or picker.key in data:
            filled[picker.key] = ids
    return filled
