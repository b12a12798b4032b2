"""Django's SMTP e-mail backend, keeping what the server answered.

Django's backend sends through ``smtplib`` and keeps nothing of the server's
replies: not the reply to the message (``250 2.0.0 Ok: queued as 4Bq9``), and
not the recipients a server refused while accepting the others (``sendmail``
returns them, and the backend drops them). The e-mail channel records both, so
this backend connects with an ``smtplib.SMTP`` that keeps them on itself,
through the backend's public ``connection_class``. Everything else (host,
port, TLS, login, timeout: the ``EMAIL_*`` settings) is Django's.
"""

import smtplib

from django.core.mail.backends import smtp


class _Keeping:
    """An SMTP connection that keeps the last message's outcome:
    ``keel_reply`` (code, text) to the message's data, ``keel_refused``
    {address: (code, text)} for the recipients refused while others were accepted."""

    keel_reply: tuple[int, bytes] | None = None
    keel_refused: dict | None = None

    def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=()):
        self.keel_reply, self.keel_refused = None, None
        refused = super().sendmail(from_addr, to_addrs, msg, mail_options, rcpt_options)
        self.keel_refused = dict(refused)
        return refused

    def data(self, msg):
        reply = super().data(msg)
        self.keel_reply = reply
        return reply


class KeepingSMTP(_Keeping, smtplib.SMTP):
    pass


class KeepingSMTPSSL(_Keeping, smtplib.SMTP_SSL):
    pass


class EmailBackend(smtp.EmailBackend):
    """Django's SMTP backend whose connection keeps the server's replies."""

    @property
    def connection_class(self):
        return KeepingSMTPSSL if self.use_ssl else KeepingSMTP
