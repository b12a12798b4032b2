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


def output_choices(snapshot: dict, position: int) -> dict[str, list]:
    """The values the output shape allows for a field, where it names them:
    a parse step's labels (its ``label`` field), and ``enum`` in the input
    schema or a validate step's schema before the gate."""
    choices: dict[str, list] = {}
    schemas = [snapshot.get("input_schema") or {}]
    for step in snapshot.get("steps", []):
        if step.get("position", 0) >= position:
            break
        config = step.get("config") or {}
        if step.get("kind") == "validate" and isinstance(config.get("schema"), dict):
            schemas.append(config["schema"])
        if step.get("kind") == "parse" and config.get("labels"):
            choices["label"] = list(config["labels"])
    for schema in schemas:
        for key, rule in (schema.get("properties") or {}).items():
            if isinstance(rule, dict) and isinstance(rule.get("enum"), list) and rule["enum"]:
                choices[key] = list(rule["enum"])
    return choices


class OutputEditForm(forms.Form):
    """The output under review, one form field per top-level field: a text area
    per text, a select where the output shape names the choices, a number box,
    a yes/no select; a nested value is edited as that field's JSON alone. It
    keeps the output's shape: the same fields, each of the same JSON type (the
    service checks that again, under the task's lock)."""

    def __init__(self, *args, original: dict, choices: dict[str, list] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.original = original if isinstance(original, dict) else {}
        self.keys: dict[str, str] = {}  # form field name -> output key
        choices = choices or {}
        for index, (key, value) in enumerate(self.original.items()):
            name = f"field_{index}"
            self.keys[name] = key
            self.fields[name] = _field_for(key, value, choices.get(key))

    def clean(self):
        data = super().clean()
        edited = {}
        for name, key in self.keys.items():
            if name not in data:
                return data  # a field's own error is already on the form
            edited[key] = _same_text(self.original[key], data[name])
        data["edited_output"] = edited
        return data

    def field_key(self, name: str) -> str:
        return self.keys[name]


def _same_text(original, value):
    """A browser sends a text area's lines ending in CRLF: text whose lines
    are unchanged is the original, and changed text keeps plain newlines."""
    if not isinstance(value, str):
        return value
    value = value.replace("\r\n", "\n")
    if isinstance(original, str) and original.replace("\r\n", "\n") == value:
        return original
    return value


class _JSONValueField(forms.CharField):
    """A nested value (object, list or null) as its own JSON, checked alone."""

    def __init__(self, *, key: str, kind: type | None, **kwargs):
        self.key, self.kind = key, kind
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)

    def clean(self, value):
        text = super().clean(value)
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError as error:
            raise forms.ValidationError(f"{self.key} is not valid JSON: {error}.") from None
        if self.kind is not None and parsed is not None and not isinstance(parsed, self.kind):
            raise forms.ValidationError(f"{self.key} must stay a{'n object' if self.kind is dict else ' list'}.")
        return parsed


def _field_for(key: str, value, choices: list | None) -> forms.Field:
    common = {"label": key, "initial": value, "required": False}
    if choices and (value is None or value in choices):
        # Each choice by its text (a number or flag choice keeps its JSON type on the way back).
        by_text = {str(c): c for c in choices}
        options = [("", "— none —")] if value is None else []
        options += [(text, text) for text in by_text]
        return forms.TypedChoiceField(
            choices=options, coerce=lambda text: by_text.get(text), empty_value=None,
            **{**common, "initial": "" if value is None else str(value)},
            error_messages={"invalid_choice": f"{key}: choose one of {', '.join(by_text)}."},
        )  # fmt: skip
    if isinstance(value, bool):
        return forms.TypedChoiceField(
            choices=[("true", "yes"), ("false", "no")],
            coerce=lambda v: v == "true",
            **{**common, "initial": "true" if value else "false"},
        )
    # A browser sends a number box that holds no number as empty: both say the same.
    number = {"required": f"Enter a number for {key}.", "invalid": f"Enter a number for {key}."}
    if isinstance(value, int):
        return forms.IntegerField(**{**common, "required": True}, error_messages=number)
    if isinstance(value, float):
        return forms.FloatField(
            **{**common, "required": True}, error_messages=number, widget=forms.NumberInput(attrs={"step": "any"})
        )
    if isinstance(value, str):
        if len(value) <= 80 and "\n" not in value:  # a short line: a one-line box
            return forms.CharField(strip=False, widget=forms.TextInput(attrs={"class": "line"}), **common)
        rows = min(16, max(2, len(value) // 70 + value.count("\n") + 1))
        return forms.CharField(strip=False, widget=forms.Textarea(attrs={"rows": rows}), **common)
    kind = dict if isinstance(value, dict) else list if isinstance(value, list) else None
    return _JSONValueField(
        key=key, kind=kind, strip=False, widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}), **common
    )


class QAForm(forms.Form):
    verdict = forms.ChoiceField(
        choices=[("correct", "Correct"), ("incorrect", "Incorrect")],
        widget=forms.RadioSelect,
        error_messages={"required": "Choose correct or incorrect.", "invalid_choice": "Choose correct or incorrect."},
    )
    category = forms.CharField(required=False, max_length=100)
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class MinutesForm(forms.Form):
    minutes_per_item = forms.IntegerField(min_value=0, max_value=600, label="Minutes a person spends per item")
