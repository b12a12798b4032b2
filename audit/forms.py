from django import forms

from audit.exports import AuditFilter


class TimelineFilterForm(forms.Form):
    """The timeline's filter. Workspaces and pipelines are offered only where
    the reader holds view_audit, so naming any other is a form error."""

    since = forms.DateTimeField(required=False, help_text="UTC unless it says otherwise")
    until = forms.DateTimeField(required=False)
    workspace = forms.ModelChoiceField(queryset=None, required=False)
    pipeline = forms.ModelChoiceField(queryset=None, required=False)
    actor = forms.CharField(required=False, max_length=150)
    action = forms.CharField(required=False, max_length=100, help_text="run matches run.started, run.completed...")
    run = forms.IntegerField(required=False, min_value=1)
    object = forms.RegexField(
        required=False,
        regex=r"^[\w.-]+:[\w.-]+$",
        max_length=200,
        help_text="type:id, e.g. pipeline:3",
        error_messages={"invalid": "Name an object as type:id, e.g. pipeline:3."},
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, workspaces, pipelines, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["workspace"].queryset = workspaces
        self.fields["pipeline"].queryset = pipelines

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and until <= since:
            self.add_error("until", "Until must be after since.")
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
    pipeline = forms.ModelChoiceField(queryset=None)
    at = forms.DateTimeField(label="As of", help_text="UTC unless it says otherwise")

    def __init__(self, *args, pipelines, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pipeline"].queryset = pipelines
