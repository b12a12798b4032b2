from django import forms
from django.utils import timezone

from audit.exports import AuditFilter


class Picker(forms.DateTimeInput):
    """The browser's own date and time picker (``datetime-local``), to the
    second, in the site's time zone, which the field reads it in."""

    input_type = "datetime-local"

    def __init__(self, attrs=None):
        super().__init__(attrs={"step": "1", **(attrs or {})}, format="%Y-%m-%dT%H:%M:%S")


class NamedSelect(forms.Select):
    """A select whose options show names and, on hover, the object's kind and id."""

    def __init__(self, kind: str, attrs=None):
        super().__init__(attrs)
        self.kind = kind

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if value:
            option["attrs"]["title"] = f"{self.kind} #{value}"
        return option


class PipelineChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.workspace.name} › {obj.name}"


def _zone_help() -> str:
    return f"Your picker's time is read as {timezone.get_current_timezone_name()}."


def action_choices(actions: list[str]) -> list:
    """Grouped by family: ``run`` (every run event) first, then each action."""
    families: dict[str, list[str]] = {}
    for action in actions:
        families.setdefault(action.split(".", 1)[0], []).append(action)
    choices: list = [("", "any action")]
    for family, members in sorted(families.items()):
        if members == [family]:  # an action without a family of its own
            choices.append((family, family))
            continue
        # "run" matches run.started, run.completed...: the family first, then each of it.
        choices.append((family, [(family, f"every {family} event")] + [(a, a) for a in members if a != family]))
    return choices


class TimelineFilterForm(forms.Form):
    """The timeline's filter. Workspaces, pipelines, actors and actions are
    offered only from what the reader may see (view_audit), so naming any
    other is a form error, worded the same whether or not it exists."""

    since = forms.DateTimeField(label="From", required=False, widget=Picker())
    until = forms.DateTimeField(label="Until", required=False, widget=Picker())
    workspace = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="any workspace", widget=NamedSelect("workspace")
    )
    pipeline = PipelineChoiceField(
        queryset=None, required=False, empty_label="any pipeline", widget=NamedSelect("pipeline")
    )
    actor = forms.ChoiceField(required=False)
    action = forms.ChoiceField(required=False)
    run = forms.IntegerField(required=False, min_value=1, widget=forms.NumberInput(attrs={"placeholder": "run id"}))
    object = forms.RegexField(
        required=False,
        regex=r"^[\w.-]+:[\w.-]+$",
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": "type:id, e.g. pipeline:3"}),
        error_messages={"invalid": "Name an object as type:id, e.g. pipeline:3."},
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, workspaces, pipelines, actors: list[str], actions: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["workspace"].queryset = workspaces
        self.fields["pipeline"].queryset = pipelines
        self.fields["actor"].choices = [("", "anyone")] + [(actor, actor) for actor in actors]
        self.fields["action"].choices = action_choices(actions)
        self.fields["since"].help_text = _zone_help()

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and until <= since:
            self.add_error("until", "Until must be after From.")
        return cleaned

    def audit_filter(self) -> AuditFilter:
        data = self.cleaned_data
        object_type, _, object_id = (data.get("object") or "").partition(":")
        return AuditFilter(
            since=data.get("since"),
            until=data.get("until"),
            workspace_id=data["workspace"].pk if data.get("workspace") else None,
            pipeline_id=data["pipeline"].pk if data.get("pipeline") else None,
            actor=data.get("actor") or None,
            action=data.get("action") or None,
            run_id=data.get("run"),
            object_type=object_type or None,
            object_id=object_id or None,
        )


class PermissionsAtForm(forms.Form):
    pipeline = PipelineChoiceField(queryset=None, empty_label="choose a pipeline", widget=NamedSelect("pipeline"))
    at = forms.DateTimeField(label="As of", widget=Picker())

    def __init__(self, *args, pipelines, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pipeline"].queryset = pipelines
        self.fields["at"].help_text = _zone_help()
