"""Optional TOTP two-factor sign-in (django-otp), switched on by KEEL_TWO_FACTOR.

When on, a staff member who has confirmed an authenticator must give a code
after the password before reaching any page, and a governance lead must set
one up first. The password step stays Django's admin login (throttled by
django-axes); this second step is one page, ``two-factor``, that either
confirms a new authenticator or verifies a code, and marks the session
verified (``django_otp.login``).
"""

import base64
import logging

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from governance.permissions import is_governance_lead

logger = logging.getLogger("keel.security")


def _devices(user):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.filter(user=user)


def two_factor_pending(request) -> bool:
    """True when this signed-in request must pass the second step first."""
    user = request.user
    if not settings.KEEL_TWO_FACTOR or not user.is_authenticated or not user.is_staff:
        return False
    if user.is_verified():
        return False

    return _devices(user).filter(confirmed=True).exists() or is_governance_lead(user)


def two_factor_exempt(path: str) -> bool:
    return path in (reverse("two-factor"), reverse("admin:logout")) or path.startswith(settings.STATIC_URL)


class CodeForm(forms.Form):
    code = forms.RegexField(regex=r"^\d{6}$", error_messages={"invalid": "Enter the 6-digit code."})


@transaction.atomic
def two_factor_confirm(*, user, device, code: str) -> bool:
    """Confirm a new authenticator with its first code; the device's save
    records ``user.two_factor_enabled`` (governance/identity.py)."""
    if not device.verify_token(code):
        return False
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return True


@login_required
@require_http_methods(["GET", "POST"])
def two_factor(request):
    from django_otp import login as otp_login
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = request.user
    confirmed = _devices(user).filter(confirmed=True).first()
    device = confirmed or _devices(user).filter(confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    form = CodeForm(request.POST or None)
    if form.is_valid():
        code = form.cleaned_data["code"]
        ok = device.verify_token(code) if confirmed else two_factor_confirm(user=user, device=device, code=code)
        if ok:
            otp_login(request, device)
            target = request.GET.get("next", "")
            if not url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
                target = reverse("admin:index")
            return redirect(target)
        logger.warning("two-factor code refused: user=%s", user.get_username())
        form.add_error("code", "That code is not right (or has expired); try the current one.")
    context = {
        "form": form,
        "setting_up": confirmed is None,
        "secret": base64.b32encode(device.bin_key).decode("ascii"),
        "config_url": device.config_url,
    }
    return render(request, "security/two_factor.html", context, status=400 if form.errors else 200)
