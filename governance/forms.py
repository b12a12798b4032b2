"""Form pieces every Keel admin page of governed configuration uses.

- ``JSONEditorField``: a JSON field shown pretty-printed in a monospace
  editor; what the user typed comes back exactly as typed when the form is
  shown again, and a syntax error names its line and column.
- ``ChangeReasonForm``: the "why" of an edit. Every change form of
  history-tracked configuration asks for it; the workspace's
  ``change_reason_required`` decides whether it may be left empty. The admin
  stores it on the history record (simple-history's ``_change_reason``),
  whose audit event carries it (governance.signals.record_history).
"""

import json

from django import forms
from django.core.exceptions import ValidationError

from governance.models import Workspace

# The editor grows with its text between these heights (in lines).
_MIN_ROWS, _MAX_ROWS = 3, 30


class RawJSON(str):
    """Text the user typed, shown again as it is (not re-encoded)."""


class JSONEditor(forms.Textarea):
    """A monospace textarea as tall as its JSON (within limits), without
    spell-checking or soft wrapping, so indentation reads as typed."""

    def __init__(self, attrs: dict | None = None) -> None:
        base = {"class": "keel-json", "spellcheck": "false", "wrap": "off", "autocapitalize": "off"}
        super().__init__({**base, **(attrs or {})})

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        lines = str(value or "").count("\n") + 1
        context["widget"]["attrs"]["rows"] = max(_MIN_ROWS, min(_MAX_ROWS, lines + 1))
        return context


def json_error(error: json.JSONDecodeError) -> str:
    """``line 3, column 7: Expecting ',' delimiter``: where the text went wrong."""
    return f"line {error.lineno}, column {error.colno}: {error.msg}"


class JSONEditorField(forms.JSONField):
    """Parses JSON text; refuses bad text with the line and column at fault."""

    widget = JSONEditor

    def to_python(self, value):
        if self.disabled or value in self.empty_values or not isinstance(value, str):
            return super().to_python(value)
        try:
            json.loads(value, cls=self.decoder)
        except json.JSONDecodeError as error:
            raise ValidationError(json_error(error), code="invalid") from None
        return super().to_python(value)

    def bound_data(self, data, initial):
        # Shown again exactly as typed (valid or not), never re-encoded on one line.
        if self.disabled:
            return initial
        return RawJSON(data) if isinstance(data, str) else data

    def prepare_value(self, value):
        if isinstance(value, RawJSON):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)

    def has_changed(self, initial, data):
        # Compared as data: re-indenting the same JSON is not a change.
        try:
            typed = json.loads(data, cls=self.decoder) if isinstance(data, str) else data
        except json.JSONDecodeError:
            return True
        encode = {"sort_keys": True, "cls": self.encoder}
        return json.dumps(initial, **encode) != json.dumps(typed, **encode)


CHANGE_REASON = "change_reason"


class ChangeReasonForm(forms.ModelForm):
    """Adds the reason for a change; required when the object's workspace
    requires reasons (the stored policy, never the one being typed)."""

    change_reason = forms.CharField(
        label="Reason for this change",
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "class": "keel-reason"}),
        help_text="Shown in the history and recorded in the audit trail.",
    )

    def clean(self):
        cleaned = super().clean()
        reason = (cleaned.get(CHANGE_REASON) or "").strip()
        cleaned[CHANGE_REASON] = reason
        workspace = self.policy_workspace()
        if not reason and workspace is not None and workspace.change_reason_required:
            self.add_error(
                CHANGE_REASON, f"Say why you are making this change: workspace {workspace} requires a reason."
            )
        return cleaned

    def policy_workspace(self) -> Workspace | None:
        """The workspace whose policy applies: the object's own as stored,
        else the one chosen on the form (a new object)."""
        if isinstance(self.instance, Workspace):
            return Workspace.objects.filter(pk=self.instance.pk).first() if self.instance.pk else None
        if self.instance.pk is not None:
            stored = type(self.instance)._default_manager.filter(pk=self.instance.pk).first()
            workspace_id = getattr(stored, "audit_workspace_id", None) if stored is not None else None
            if workspace_id is not None:
                return Workspace.objects.filter(pk=workspace_id).first()
        chosen = getattr(self, "cleaned_data", {}).get("workspace")
        return chosen if isinstance(chosen, Workspace) else None
