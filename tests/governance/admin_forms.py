"""What an admin change page's form posts when the user changes nothing:
every field as the page shows it, and each inline as it stands."""

from django.forms import BooleanField, ModelMultipleChoiceField


def _value(field, value):
    if isinstance(field, BooleanField):
        return "on" if value else None
    if isinstance(field, ModelMultipleChoiceField) or isinstance(value, list | tuple):
        return [str(v) for v in value or []]
    return "" if value is None else str(value)


def as_posted(response) -> dict:
    """The POST data of the change form ``response`` shows, unchanged."""
    context = response.context
    data = {}
    forms = [context["adminform"].form]
    for inline in context.get("inline_admin_formsets", []):
        formset = inline.formset
        initial, prefix = list(formset.initial_forms), formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": str(len(initial)), f"{prefix}-INITIAL_FORMS": str(len(initial)),
                     f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"})  # fmt: skip
        forms += initial
    for form in forms:
        for name, field in form.fields.items():
            value = _value(field, form[name].value())
            if value is not None:
                data[form.add_prefix(name)] = value
    return data
