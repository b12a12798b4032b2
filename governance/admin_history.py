"""History, field-by-field diff between any two versions, and revert with a
reason, for every history-tracked model in the admin.

A version is one simple-history record, named by its ``history_id``. Reading
history needs the view right on the object, reverting the change right; an
object outside the admin's queryset is a 404, as on Django's own pages. The
revert itself is ``governance.services.history_revert``: these views only find
the object, ask for a reason and show what would change.

A model without history (runs, releases, review tasks, ...) keeps Django's
own history page (the admin's log of who changed it) and has no compare or
revert pages.
"""

import difflib
import json
from dataclasses import dataclass
from itertools import islice

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.text import capfirst

from governance.services import history_revert, is_history_tracked
from pipelines.releases.config import pipeline_steps_at

# history_id is an integer column; anything larger is not a version (and
# would overflow the query on some databases instead of finding nothing).
_MAX_HISTORY_ID = 2**31 - 1
_PER_PAGE = 100


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "hunk", "add", "del" or "same"
    text: str


@dataclass(frozen=True)
class FieldChange:
    name: str
    label: str
    old: str
    new: str
    # A line diff for long text and JSON, where old → new would be unreadable.
    lines: list[DiffLine] | None = None


@dataclass(frozen=True)
class RowChange:
    """A row that belongs to a version (a pipeline's step): added, removed or changed."""

    label: str
    status: str
    changes: list[FieldChange]


class HistoryRevertForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        max_length=1000,
        help_text="Recorded on the new version and in the audit trail.",
    )


def _diff_fields(model, *, skip: tuple[type[models.Model], ...] = ()) -> list[models.Field]:
    """The fields a version is made of: everything but the key, the automatic
    timestamps and (for related rows) the key back to the parent."""
    return [
        f
        for f in model._meta.concrete_fields
        if not f.primary_key
        and not getattr(f, "auto_now", False)
        and not getattr(f, "auto_now_add", False)
        and not (f.is_relation and f.related_model in skip)
    ]


def _is_long(field: models.Field) -> bool:
    return isinstance(field, models.TextField | models.JSONField)


def _line_diff(old: str, new: str) -> list[DiffLine]:
    # The first two lines of a unified diff are the file headers.
    raw = islice(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3), 2, None)
    kinds = {"@": "hunk", "+": "add", "-": "del"}
    lines = [DiffLine(kinds.get(line[:1], "same"), line) for line in raw]
    return lines or [DiffLine("hunk", "(only whitespace at the ends of lines differs)")]


class _Differ:
    """Compares two versions field by field, naming related objects once each."""

    def __init__(self) -> None:
        self._labels: dict[tuple[type, object], str] = {}

    def display(self, field: models.Field, value) -> str:
        if value is None:
            return "—"
        if field.is_relation:
            key = (field.related_model, value)
            if key not in self._labels:
                related = field.related_model._default_manager.filter(pk=value).first()
                self._labels[key] = str(related) if related is not None else f"#{value} (deleted)"
            return self._labels[key]
        if isinstance(field, models.JSONField):
            return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)
        if field.choices:
            return str(dict(field.flatchoices).get(value, value))
        return str(value) if value != "" else "(empty)"

    def changes(self, fields: list[models.Field], old, new) -> list[FieldChange]:
        """Only the fields that differ; ``old`` or ``new`` may be None for a row
        that did not exist on that side."""
        result = []
        for field in fields:
            before = getattr(old, field.attname) if old is not None else None
            after = getattr(new, field.attname) if new is not None else None
            if old is not None and new is not None and before == after:
                continue
            if old is None and after in (None, "", {}, []) or new is None and before in (None, "", {}, []):
                continue  # an empty field of a row added or removed says nothing
            old_text, new_text = self.display(field, before), self.display(field, after)
            lines = None
            if _is_long(field):
                lines = _line_diff("" if before in (None, "") else old_text, "" if after in (None, "") else new_text)
            result.append(FieldChange(field.name, capfirst(field.verbose_name), old_text, new_text, lines))
        return result

    def rows(self, parent_model, old_rows: dict, new_rows: dict) -> list[RowChange]:
        result = []
        order = [*new_rows, *(pk for pk in old_rows if pk not in new_rows)]
        for pk in order:
            old, new = old_rows.get(pk), new_rows.get(pk)
            fields = _diff_fields(type(new or old), skip=(parent_model,))
            changes = self.changes(fields, old, new)
            if old is not None and new is not None and not changes:
                continue
            status = "added" if old is None else "removed" if new is None else "changed"
            result.append(RowChange(str(new or old), status, changes))
        return result


class HistoryAdminMixin:
    history_template = "admin/keel/history.html"
    history_compare_template = "admin/keel/history_compare.html"
    history_revert_template = "admin/keel/history_revert.html"

    def get_urls(self):
        if not is_history_tracked(self.model):
            return super().get_urls()
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        urls = [
            path(
                "<path:object_id>/history/compare/",
                self.admin_site.admin_view(self.history_compare_view),
                name=f"{prefix}_history_compare",
            ),
            path(
                "<path:object_id>/history/<int:history_id>/revert/",
                self.admin_site.admin_view(self.history_revert_view),
                name=f"{prefix}_history_revert",
            ),
        ]
        return urls + super().get_urls()

    # Pages

    def history_view(self, request, object_id, extra_context=None):
        if not is_history_tracked(self.model):
            return super().history_view(request, object_id, extra_context)
        obj = self._history_object(request, object_id)
        records = obj.history.select_related("history_user").order_by("-history_date", "-history_id")
        page = Paginator(records, _PER_PAGE).get_page(request.GET.get("p"))
        rows = list(page)
        # Each row names what changed against the version before it; the
        # oldest row of a page compares with the newest of the next page.
        older = [*rows[1:], rows[-1].prev_record if rows else None]
        fields = _diff_fields(self.model)
        differ = _Differ()
        versions = [
            {
                "record": record,
                "changed": [c.label for c in differ.changes(fields, previous, record)] if previous else [],
                "is_current": page.number == 1 and record is rows[0],
            }
            for record, previous in zip(rows, older, strict=True)
        ]
        context = {
            **self._history_context(request, obj, f"History: {obj}"),
            "versions": versions,
            "page": page,
            "can_revert": self.has_change_permission(request, obj),
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.history_template, context)

    def history_compare_view(self, request, object_id):
        obj = self._history_object(request, object_id)
        ids = [self._history_id(request.GET.get(key)) for key in ("a", "b")]
        if None in ids:
            return self._back_to_history(request, obj, "Choose two versions to compare.")
        found = {v.history_id: v for v in obj.history.filter(history_id__in=ids).select_related("history_user")}
        missing = [str(i) for i in ids if i not in found]
        if missing:
            return self._back_to_history(request, obj, f"Version {', '.join(missing)} is not a version of {obj}.")
        # Always read the diff from the older version to the newer one.
        old, new = sorted((found[i] for i in ids), key=lambda v: (v.history_date, v.history_id))
        differ = _Differ()
        context = {
            **self._history_context(request, obj, f"Compare versions {old.history_id} and {new.history_id}: {obj}"),
            "old": old,
            "new": new,
            "old_label": f"Version {old.history_id}",
            "new_label": f"Version {new.history_id}",
            "changes": differ.changes(_diff_fields(self.model), old, new),
            "row_changes": self._row_changes(differ, obj, old, new),
        }
        return TemplateResponse(request, self.history_compare_template, context)

    def history_revert_view(self, request, object_id, history_id):
        obj = self._history_object(request, object_id)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        version = obj.history.filter(history_id=history_id).first() if history_id <= _MAX_HISTORY_ID else None
        if version is None:
            raise Http404(f"Version {history_id} is not a version of {obj}.")
        form = HistoryRevertForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                history_revert(obj=obj, history_id=history_id, reason=form.cleaned_data["reason"], actor=request.user)
            except ValidationError as exc:
                self._form_errors(form, exc)
            except IntegrityError:
                # e.g. a step that named a prompt deleted since: the database refuses it.
                form.add_error(None, "This version refers to objects that no longer exist; nothing was changed.")
            else:
                self.message_user(
                    request, f"{capfirst(self.opts.verbose_name)} “{obj}” reverted to version {history_id}."
                )
                return HttpResponseRedirect(reverse(self._admin_url("change"), args=[quote(obj.pk)]))
            # The failed revert rolled back in the database but not on this instance.
            obj = self._history_object(request, object_id)
        # Read as "now → after the revert".
        differ = _Differ()
        context = {
            **self._history_context(request, obj, f"Revert {obj} to version {history_id}"),
            "version": version,
            "form": form,
            "old_label": "Now",
            "new_label": "After the revert",
            "changes": differ.changes(_diff_fields(self.model), obj, version),
            "row_changes": self._row_changes(differ, obj, None, version),
        }
        return TemplateResponse(request, self.history_revert_template, context)

    # Hooks and helpers

    def history_related_rows(self, obj, version) -> dict | None:
        """Rows that are part of a version of ``obj`` (``None``: as it is now),
        keyed by id, or None when a version is the object's own fields only.

        A pipeline version includes its steps as saved until the next pipeline
        record; the rule lives with the pipeline's restore in pipelines.releases.deploy.
        """
        if obj._meta.label_lower != "pipelines.pipeline":
            return None

        steps = obj.steps.order_by("position") if version is None else pipeline_steps_at(pipeline=obj, version=version)
        return {step.pk: step for step in steps}

    def _row_changes(self, differ: _Differ, obj, old, new) -> list[RowChange] | None:
        """How the related rows differ from ``old`` to ``new`` (None: now), or
        None when the object has none."""
        old_rows, new_rows = self.history_related_rows(obj, old), self.history_related_rows(obj, new)
        if old_rows is None or new_rows is None:
            return None
        return differ.rows(self.model, old_rows, new_rows)

    def _history_object(self, request, object_id):
        if not is_history_tracked(self.model):
            raise Http404(f"{capfirst(self.opts.verbose_name_plural)} keep no versions.")
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with ID “{object_id}” that you may see.")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        return obj

    @staticmethod
    def _history_id(value: str | None) -> int | None:
        if value is None or not value.isascii() or not value.isdigit():
            return None
        number = int(value)
        return number if 0 < number <= _MAX_HISTORY_ID else None

    @staticmethod
    def _form_errors(form: forms.Form, exc: ValidationError) -> None:
        if not hasattr(exc, "error_dict"):
            form.add_error(None, exc)
            return
        for field, errors in exc.message_dict.items():
            if field in form.fields:
                form.add_error(field, errors)
            elif field == NON_FIELD_ERRORS:
                form.add_error(None, errors)
            else:
                # A field of the object whose old value is no longer valid.
                form.add_error(None, [f"{field}: {message}" for message in errors])

    def _admin_url(self, name: str) -> str:
        return f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}"

    def _back_to_history(self, request, obj, message: str) -> HttpResponseRedirect:
        self.message_user(request, message, level=messages.ERROR)
        return HttpResponseRedirect(reverse(self._admin_url("history"), args=[quote(obj.pk)]))

    def _history_context(self, request, obj, title: str) -> dict:
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "object": obj,
            "module_name": str(capfirst(self.opts.verbose_name_plural)),
            "history_url": reverse(self._admin_url("history"), args=[quote(obj.pk)]),
            "compare_url": reverse(self._admin_url("history_compare"), args=[quote(obj.pk)]),
            "revert_url_name": self._admin_url("history_revert"),
        }
