"""What the pipelines admin's actions share: the form page an action asks with, the
message a refusal becomes, and running a service on each selected object.

Every action calls its service, which checks the rights on each object; a refusal
(ValidationError or PermissionDenied) is shown for that object and the others go on.
"""

from collections.abc import Callable, Iterable

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Recorded in the audit trail.")


def refusal(error: Exception) -> str:
    """A service's refusal as one line for the admin's message."""
    return "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)


def action_form(modeladmin, request, queryset, form_class, *, action: str, title: str, verb: str):
    """The form an action needs, bound once the user has applied it: (form, None)
    when valid, else (None, the confirmation page that asks for it)."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        return form, None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "queryset": queryset,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action": action,
        "verb": verb,
    }
    return None, TemplateResponse(request, "admin/keel/reason_action.html", context)


def act_on_each(modeladmin, request, objects: Iterable, call: Callable, done: str, *, name=str) -> None:
    """Call ``call(obj)`` for each object; tell the user ``done`` (formatted with
    ``obj`` and ``result``) or the refusal, naming the object with ``name``."""
    for obj in objects:
        try:
            result = call(obj)
        except (ValidationError, PermissionDenied) as error:
            modeladmin.message_user(request, f"{name(obj)}: {refusal(error)}", messages.ERROR)
        else:
            modeladmin.message_user(request, done.format(obj=name(obj), result=result))
