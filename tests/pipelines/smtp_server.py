"""A real SMTP server on 127.0.0.1 (aiosmtpd) for e-mail delivery tests.

It records every message it receives (envelope and bytes) and can be told to
refuse recipients (550, permanent), defer them (450, try later), or drop the
connection after the message's data arrived and before it answers, as a
server that crashes mid-transaction does: the client cannot know whether the
message was taken.
"""

import email
import email.policy
import logging
import socket
import threading
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller

QUEUED = "250 2.0.0 Ok: queued as K33L42"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.content, policy=email.policy.default)


@dataclass
class SMTPServer:
    """``with SMTPServer() as server:`` then ``server.port``; ``server.messages`` as received."""

    refuse: set[str] = field(default_factory=set)  # addresses answered 550
    defer: set[str] = field(default_factory=set)  # addresses answered 450
    drops: int = 0  # how many messages' connections to drop before answering
    messages: list[Received] = field(default_factory=list)
    dropped: list[Received] = field(default_factory=list)  # what arrived on the connections dropped

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        with socket.socket() as probe:  # a free port, for the controller's own readiness check
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> "SMTPServer":
        # aiosmtpd logs each command, addresses and all: the tests look for addresses in Keel's logs only.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self._controller.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._controller.stop()

    # aiosmtpd's handler hooks.
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
        if address.lower() in self.defer:
            return f"450 4.2.0 <{address}>: Recipient address rejected: Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        with self._lock:
            if self.drops:
                self.drops -= 1
                self.dropped.append(received)
                server.transport.close()  # hang up before answering
                return "421 4.3.0 closing"  # never arrives: the transport is closed
            self.messages.append(received)
        return QUEUED
