import pytest

from pipelines.management.commands.keel_demo import TICKET_SCHEMA
from pipelines.steps.base import StepError
from pipelines.steps.validate import execute

from .helpers import make_ctx

TICKET = {"subject": "Refund", "body": "Please refund order 1001.", "customer_email": "ann@example.com"}


def test_it_passes_a_valid_document_through_unchanged():
    result = execute(TICKET, make_ctx(input_schema=TICKET_SCHEMA))
    assert result.output == TICKET
    assert result.output is not TICKET


def test_it_uses_its_own_schema_before_the_input_schema():
    ctx = make_ctx(config={"schema": {"required": ["order_id"]}}, input_schema=TICKET_SCHEMA)
    with pytest.raises(StepError, match=r"\$: 'order_id' is a required property"):
        execute(TICKET, ctx)


def test_without_any_schema_everything_passes():
    assert execute({"anything": [1, 2]}, make_ctx()).output == {"anything": [1, 2]}


def test_it_lists_every_problem_with_its_path_sorted():
    bad = {"subject": "", "body": "x", "customer_email": "not-an-address", "channel": "fax", "extra": 1}
    with pytest.raises(StepError) as error:
        execute(bad, make_ctx(input_schema=TICKET_SCHEMA))
    assert str(error.value) == (
        "the document does not match the schema: "
        "$: Additional properties are not allowed ('extra' was unexpected); "
        "$.channel: 'fax' is not one of ['email', 'chat', 'web', 'phone']; "
        "$.customer_email: 'not-an-address' is not a 'email'; "
        "$.subject: '' should be non-empty"
    )


def test_the_message_is_the_same_on_every_run():
    bad = {"subject": 1, "body": 2, "customer_email": 3}
    messages = set()
    for _ in range(3):
        with pytest.raises(StepError) as error:
            execute(bad, make_ctx(input_schema=TICKET_SCHEMA))
        messages.add(str(error.value))
    assert len(messages) == 1


@pytest.mark.parametrize("address", ["a@b", "@example.com", "ann@", "ann smith@example.com", "a@b@c.com"])
def test_it_checks_email_format(address):
    with pytest.raises(StepError, match="is not a 'email'"):
        execute({**TICKET, "customer_email": address}, make_ctx(input_schema=TICKET_SCHEMA))


def test_it_refuses_a_broken_schema():
    with pytest.raises(StepError, match="the schema is not a valid JSON Schema"):
        execute({}, make_ctx(config={"schema": {"type": "nonsense"}}))
