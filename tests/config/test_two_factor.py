"""Optional TOTP two-factor sign-in: off by default; when on, a governance
lead must set up an authenticator before reaching any page, and a staff
member who has one must give a code every sign-in."""

import pytest
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent


def current_code(device) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


@pytest.fixture
def two_factor_on(settings):
    settings.KEEL_TWO_FACTOR = True


def test_with_two_factor_off_nobody_is_asked(client, lead):
    client.force_login(lead)
    assert client.get(reverse("audit-timeline")).status_code == 200


def test_a_lead_must_set_up_an_authenticator_first(client, lead, two_factor_on):
    client.force_login(lead)
    response = client.get(reverse("audit-timeline"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("two-factor"))
    page = client.get(reverse("two-factor"))
    assert page.context["setting_up"] and page.context["secret"]
    device = TOTPDevice.objects.get(user=lead, confirmed=False)
    wrong = client.post(reverse("two-factor"), {"code": "000000" if current_code(device) != "000000" else "111111"})
    assert wrong.status_code == 400 and not TOTPDevice.objects.filter(user=lead, confirmed=True).exists()
    device.refresh_from_db()
    assert device.throttling_failure_count == 1  # django-otp slows down guessing
    device.throttle_reset()  # as the back-off period passing would
    done = client.post(reverse("two-factor") + "?next=/audit/", {"code": current_code(device)})
    assert done.status_code == 302 and done["Location"] == "/audit/"
    assert client.get(reverse("audit-timeline")).status_code == 200
    assert AuditEvent.objects.filter(action="user.two_factor_enabled", actor_name="lead").exists()


def test_staff_with_an_authenticator_give_a_code_at_every_sign_in(client, auditor, two_factor_on):
    client.force_login(auditor)
    assert client.get(reverse("audit-timeline")).status_code == 200  # optional for an auditor
    device = TOTPDevice.objects.create(user=auditor, name="phone", confirmed=True)
    client.logout()
    client.force_login(auditor)
    assert client.get(reverse("audit-timeline")).status_code == 302
    assert client.post(reverse("two-factor"), {"code": "12ab"}).status_code == 400
    assert client.post(reverse("two-factor"), {"code": current_code(device)}).status_code == 302
    assert client.get(reverse("audit-timeline")).status_code == 200


def test_an_open_redirect_after_the_code_is_refused(client, auditor, two_factor_on):
    device = TOTPDevice.objects.create(user=auditor, name="phone", confirmed=True)
    client.force_login(auditor)
    response = client.post(reverse("two-factor") + "?next=https://evil.example/", {"code": current_code(device)})
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")
