import json

from django import forms

from reviews.models import REASONS, ReviewDecision

AGES = [("", "any age"), ("1", "older than 1 hour"), ("4", "older than 4 hours"), ("24", "older than a day")]


class QueueFilterForm(forms.Form):
    pipeline = forms.ChoiceField(required=False)
    reason = forms.ChoiceField(required=False, choices=[("", "any reason"), *REASONS.items()])
    age = forms.TypedChoiceField(required=False, choices=AGES, coerce=int, empty_value=None)

    def __init__(self, *args, pipelines=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pipeline"].choices = [("", "all pipelines"), *((p.slug, p.name) for p in pipelines)]


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[(d, ReviewDecision.Decision(d).label) for d in ("approve", "edit", "reject")],
        error_messages={"invalid_choice": "Choose approve, edit or reject."},
    )
    reason = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))
    output = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}))

    def clean(self):
        data = super().clean()
        data["edited_output"] = None
        if data.get("decision") == "edit":
            try:
                data["edited_output"] = json.loads(data.get("output") or "")
            except ValueError as error:
                self.add_error("output", f"The edited output is not valid JSON: {error}.")
        return data


class QAForm(forms.Form):
    verdict = forms.ChoiceField(choices=[("correct", "Correct"), ("incorrect", "Incorrect")])
    category = forms.CharField(required=False, max_length=100)
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class MinutesForm(forms.Form):
    minutes_per_item = forms.IntegerField(min_value=0, max_value=600, label="Minutes a person spends per item")
