import functools
import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pipelines.models import Delivery, Run, StepRun
from pipelines.runs.inputs import input_canonical, input_problems

MAX_INPUT_DEPTH = 32


def _check_json(value, path: str, depth: int = 0) -> None:
    """Refuse, with the path, what cannot be stored, hashed and sent on as
    JSON: a string or key with a NUL character (PostgreSQL's jsonb refuses
    it) or a lone surrogate (``"\\ud83d"``: not Unicode, so not UTF-8), and
    nesting deeper than 32 levels. Numbers are pipelines/runs/inputs.py's to judge."""
    if depth > MAX_INPUT_DEPTH:
        raise serializers.ValidationError(f"{path}: nested more than {MAX_INPUT_DEPTH} levels deep.")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path, "a key here")
            _check_json(item, f"{path}.{_printable(key)}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{path}.{index}", depth + 1)


def _check_text(text: str, path: str, what: str = "the text") -> None:
    # Reasons read "path: why", which the API's errors split into the field and the reason.
    if "\x00" in text:
        raise serializers.ValidationError(f"{path}: {what} contains a NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise serializers.ValidationError(
            f"{path}: {what} contains a lone surrogate (U+{ord(text[error.start]):04X}) at character "
            f"{error.start}, so it is not Unicode text."
        ) from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _printable(key: str) -> str:
    # A key that is refused further down still names the path: without the characters that cannot be shown.
    return key.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _check_canonical(value) -> None:
    # Numbers and text Keel cannot store and hash alike (pipelines/runs/inputs.py), by path.
    problems = input_problems(value)
    if problems:
        raise serializers.ValidationError(problems)


@extend_schema_field({"type": "object", "additionalProperties": True})
class InputField(serializers.JSONField):
    """The run input: a JSON object. In a multipart upload it arrives as JSON text."""

    def to_internal_value(self, data):
        if isinstance(data, str) and self.context.get("multipart"):
            try:  # the form field's text, parsed as strictly as a JSON body
                data = json.loads(data, parse_constant=_refuse_constant)
            except RecursionError:  # nested thousands deep: the parser runs out of stack
                raise serializers.ValidationError(f"input: nested more than {MAX_INPUT_DEPTH} levels deep.") from None
            except ValueError as exc:
                raise serializers.ValidationError(f"The input is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise serializers.ValidationError("The input must be a JSON object.")
        _check_json(data, "input")  # first: it bounds the depth the canonical check then walks
        _check_canonical(data)
        return input_canonical(data)


class RunCreateSerializer(serializers.Serializer):
    input = InputField(required=False, help_text="The run input; it must satisfy the pipeline's input schema.")
    idempotency_key = serializers.CharField(
        required=False,
        max_length=200,
        help_text="A repeated key returns the run it started (200) instead of a new one.",
    )
    source = serializers.CharField(
        required=False, max_length=200, allow_blank=True, help_text="Where the input came from."
    )

    document = serializers.FileField(
        required=False,
        allow_empty_file=True,  # refused by document_read, with the same reason as everywhere
        help_text="Multipart only: a text/plain or application/pdf document; its text reaches the run as "
        "input.document.text.",
    )

    def validate(self, attrs):
        if "input" not in attrs and "document" not in attrs:
            raise serializers.ValidationError({"input": "Give an input (or upload a document)."})
        return attrs


class StepRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = StepRun
        fields = ["position", "name", "kind", "status", "output", "output_sha256", "decision", "error",
                  "input_tokens", "output_tokens", "cost", "started_at", "finished_at"]  # fmt: skip


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        # The URL stays out: it may carry a receiver's own credentials.
        fields = ["delivery_id", "position", "channel", "status", "attempts", "last_status_code", "last_error",
                  "receiver", "created_at", "delivered_at"]  # fmt: skip


class RunSummarySerializer(serializers.ModelSerializer):
    pipeline = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    release = serializers.IntegerField(source="release.number", read_only=True)

    class Meta:
        model = Run
        fields = ["id", "pipeline", "release", "environment", "status", "trigger", "source", "idempotency_key",
                  "input_sha256", "failure_reason", "created_at", "started_at", "finished_at"]  # fmt: skip


class RunSerializer(RunSummarySerializer):
    steps = StepRunSerializer(many=True, read_only=True)
    deliveries = DeliverySerializer(many=True, read_only=True)
    gate = serializers.SerializerMethodField(help_text="The last gate step's decision, or null.")

    class Meta(RunSummarySerializer.Meta):
        fields = [*RunSummarySerializer.Meta.fields, "input", "output", "gate", "steps", "deliveries"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_gate(self, run: Run) -> dict | None:
        gates = [s for s in run.steps.all() if s.kind == "gate" and s.decision is not None]
        if not gates:
            return None
        gate = gates[-1]
        return {"position": gate.position, "status": gate.status, **gate.decision}


class StartedRunSerializer(RunSerializer):
    """``RunSerializer`` for a run that the request answering has just started,
    as that request left it: no step has run and nothing was delivered, so
    those are read from nowhere (a worker may begin at once; the run's own
    URL shows its progress)."""

    steps = serializers.SerializerMethodField()
    deliveries = serializers.SerializerMethodField()

    def get_steps(self, run: Run) -> list:
        return []

    def get_deliveries(self, run: Run) -> list:
        return []

    def get_gate(self, run: Run) -> None:
        return None


class RunFilterSerializer(serializers.Serializer):
    pipeline = serializers.SlugField(required=False, max_length=100, help_text="A pipeline's slug.")
    status = serializers.ChoiceField(choices=Run.Status.choices, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class ErrorItemSerializer(serializers.Serializer):
    field = serializers.CharField(allow_null=True)
    reason = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    errors = ErrorItemSerializer(many=True)


def run_representation(run: Run, *, started: bool = False) -> dict:
    """``RunSerializer(run).data`` (``started``: ``StartedRunSerializer``'s, for
    a run the request has just started), without building the serializer's
    fields again.

    A ModelSerializer introspects its model and deep-copies its fields for every
    instance, which costs more CPU than the rest of a run's creation answer. The
    fields are built once per process here; ``to_representation`` only reads
    them (no request context, no per-call state), so one instance answers
    every call with the same output.
    """
    return _built(StartedRunSerializer if started else RunSerializer).to_representation(run)


@functools.cache
def _built(serializer_class: type[RunSerializer]) -> RunSerializer:
    serializer = serializer_class()
    serializer.fields  # noqa: B018 (build the fields now, before the instance is shared)
    return serializer
