"""Release control over the API: roll back, pause and unpause a pipeline (at ``/resume``, its URL kept), and
ask what was live at a moment. Each view calls the service the admin action
and the command call (pipelines/releases/), as the token's user.

A refusal about the request (a field missing or malformed) is 400 naming the
field; a refusal about the pipeline's state (nothing live, a release never
approved, already paused) is 409; the rights are the services' own (403).
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from audit.context import acting_as
from pipelines.integration.api.errors import Conflict
from pipelines.integration.api.selectors import pipeline_for_token
from pipelines.integration.api.views import ERRORS, KeelAPIView
from pipelines.models import Deployment, Pipeline
from pipelines.releases.as_of import parse_moment, pipeline_as_of
from pipelines.releases.deploy import deployment_rollback
from pipelines.releases.pause import pipeline_pause, pipeline_unpause


class RollbackSerializer(serializers.Serializer):
    to = serializers.IntegerField(min_value=1, help_text="The number of the earlier approved release to put live.")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class PauseSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="Why new runs stop; shown in every refusal.")


class ResumeSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class DeploymentStateSerializer(serializers.Serializer):
    pipeline = serializers.CharField()
    release = serializers.IntegerField(allow_null=True)
    fingerprint = serializers.CharField(allow_null=True)
    paused = serializers.BooleanField()
    pause_reason = serializers.CharField(allow_blank=True)
    released_deliveries = serializers.IntegerField(required=False)


def _pipeline(request, slug: str) -> Pipeline:
    pipeline = pipeline_for_token(token=request.auth, slug=slug)
    if pipeline is None:
        raise NotFound(f"No pipeline {slug!r} is reachable with this token.")
    return pipeline


def _state(pipeline: Pipeline, **extra) -> dict:
    deployment = (
        Deployment.objects.filter(pipeline=pipeline, environment=Deployment.Environment.PRODUCTION)
        .select_related("release")
        .defer("release__snapshot")
        .first()
    )
    release = deployment.release if deployment else None
    return {
        "pipeline": pipeline.slug,
        "release": release.number if release else None,
        "fingerprint": release.fingerprint if release else None,
        "paused": bool(deployment and deployment.paused),
        "pause_reason": deployment.pause_reason if deployment else "",
        **extra,
    }


def _call(request, service, **kwargs):
    """Run a release-control service as the token's user, in one transaction;
    a refusal of the pipeline's state becomes 409."""
    try:
        with acting_as(request.user), transaction.atomic():
            return service(actor=request.user, **kwargs)
    except DjangoValidationError as error:
        if hasattr(error, "error_dict"):
            raise  # names a field: 400
        raise Conflict(" ".join(error.messages)) from None


class RollbackView(KeelAPIView):
    @extend_schema(operation_id="pipelines_rollback", request=RollbackSerializer,
                   responses={200: DeploymentStateSerializer, **ERRORS},
                   summary="Put an earlier approved release live in production at once.")  # fmt: skip
    def post(self, request, slug: str):
        pipeline = _pipeline(request, slug)
        body = RollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        _call(request, deployment_rollback, pipeline=pipeline, to_number=body.validated_data["to"],
              reason=body.validated_data.get("reason", ""))  # fmt: skip
        return Response(_state(pipeline))


class PauseView(KeelAPIView):
    @extend_schema(operation_id="pipelines_pause", request=PauseSerializer,
                   responses={200: DeploymentStateSerializer, **ERRORS},
                   summary="Emergency pause: new runs refused (409), deliveries held until unpaused.")  # fmt: skip
    def post(self, request, slug: str):
        pipeline = _pipeline(request, slug)
        body = PauseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        _call(request, pipeline_pause, pipeline=pipeline, reason=body.validated_data["reason"])
        return Response(_state(pipeline))


class ResumeView(KeelAPIView):
    @extend_schema(operation_id="pipelines_resume", request=ResumeSerializer,
                   responses={200: DeploymentStateSerializer, **ERRORS},
                   summary="Let runs start again and send the deliveries held during the pause.")  # fmt: skip
    def post(self, request, slug: str):
        pipeline = _pipeline(request, slug)
        body = ResumeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        released = _call(request, pipeline_unpause, pipeline=pipeline, reason=body.validated_data.get("reason", ""))
        return Response(_state(pipeline, released_deliveries=released))


class AsOfView(KeelAPIView):
    @extend_schema(
        operation_id="pipelines_as_of",
        parameters=[
            OpenApiParameter("at", str, required=True, description="An ISO 8601 moment, e.g. 2026-11-03T14:00Z")
        ],
        responses={200: dict, **ERRORS},
        summary="What was live at a moment: release, canary and share, pause, approvers, deployer, configuration.",
    )
    def get(self, request, slug: str):
        pipeline = _pipeline(request, slug)
        at = request.query_params.get("at")
        if not at:
            raise DjangoValidationError({"at": "Give the moment as ?at=2026-11-03T14:00Z."})
        return Response(pipeline_as_of(pipeline=pipeline, at=parse_moment(at)))
