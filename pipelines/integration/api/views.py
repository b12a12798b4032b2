"""The runs API. Every view reads through the token's selectors, so a token
reaches only what its user may see and its scope allows; what lies outside is
answered 404, as if it did not exist."""

import hashlib
from contextlib import nullcontext

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.canonical import canonical_bytes
from audit.context import acting_as, request_scope
from governance.permissions import permission_cache
from pipelines.integration.api.errors import Conflict
from pipelines.integration.api.parsers import BoundedJSONParser, RequestTooLarge, body_limit
from pipelines.integration.api.selectors import pipeline_for_token, run_detail_for_token, runs_for_token
from pipelines.integration.api.serializers import (
    ErrorSerializer,
    RunCreateSerializer,
    RunFilterSerializer,
    RunSerializer,
    RunSummarySerializer,
    run_representation,
)
from pipelines.models import Run
from pipelines.runs.documents import document_read, document_store
from pipelines.runs.engine import run_start

ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 403, 404, 409, 413, 415, 429)}


class KeelAPIView(APIView):
    def dispatch(self, request, *args, **kwargs):
        # A request asks each object-permission question once (no right changes during one).
        # Its audit context (the token the authentication names) ends with it, middleware or not.
        with permission_cache(), request_scope():
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        # Refuse an oversized body from its declared length, before reading any of it.
        length = request.META.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > body_limit():
            raise RequestTooLarge(f"The request body is larger than {body_limit()} bytes.")
        super().initial(request, *args, **kwargs)


class RunCreateView(KeelAPIView):
    parser_classes = [BoundedJSONParser, MultiPartParser]

    @extend_schema(
        operation_id="runs_create",
        request={"application/json": RunCreateSerializer, "multipart/form-data": RunCreateSerializer},
        responses={201: RunSerializer, 200: RunSerializer, **ERRORS},
        summary="Start a run of a pipeline's live release (idempotent with idempotency_key).",
    )
    def post(self, request, slug: str):
        token = request.auth
        # The change right is run_start's question: a pipeline token's read brought it
        # with the view right; otherwise it is asked now, with the view right.
        pipeline = pipeline_for_token(token=token, slug=slug, also=("change",))
        if pipeline is None:
            raise NotFound(f"No pipeline {slug!r} is reachable with this token.")
        serializer = RunCreateSerializer(
            data=request.data, context={"multipart": bool(request.FILES) or _is_multipart(request)}
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        run_input = data.get("input", {})
        key = data.get("idempotency_key")
        source = data.get("source") or f"token:{token.prefix}"
        upload, document = data.get("document"), None
        if upload is not None:
            raw = _read_upload(upload)
            document = document_read(data=raw, content_type=upload.content_type, filename=upload.name)
            run_input = {**run_input, "document": document}
        # One transaction for the run and its document; without a document run_start's own suffices.
        with acting_as(request.user), transaction.atomic() if document is not None else nullcontext():
            run, created = run_start(
                pipeline=pipeline,
                input=run_input,
                actor=request.user,
                trigger=Run.Trigger.API,
                source=source,
                idempotency_key=key,
                # Separation of duties: the token's creator asked for this run.
                requested_by_id=token.created_by_id,
            )
            if created and document is not None:
                document_store(run=run, data=raw, document=document, source=source, actor=request.user)
        if not created and run.input_sha256 != hashlib.sha256(canonical_bytes(run_input)).hexdigest():
            raise Conflict(f"Idempotency key {key!r} was used for run {run.pk} with a different input.")
        if not created:
            run = run_detail_for_token(token=token, run_id=run.pk)
        # A run this request created is answered from the row in hand, as the request left it.
        return Response(run_representation(run, started=created),
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)  # fmt: skip


def _read_upload(upload) -> bytes:
    limit = settings.KEEL_DOCUMENT_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise ValidationError({"document": f"The document is {upload.size} bytes; the limit is {limit}."})
    return upload.read(limit + 1)


def _is_multipart(request) -> bool:
    return (request.content_type or "").startswith("multipart/")


class RunDetailView(KeelAPIView):
    @extend_schema(operation_id="runs_retrieve", responses={200: RunSerializer, **ERRORS})
    def get(self, request, pk: int):
        run = run_detail_for_token(token=request.auth, run_id=pk)
        if run is None:
            raise NotFound(f"No run {pk} is reachable with this token.")
        return Response(run_representation(run))


class RunPagination(CursorPagination):
    ordering = ("-created_at", "-pk")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class RunListView(generics.ListAPIView):
    serializer_class = RunSummarySerializer
    pagination_class = RunPagination

    @extend_schema(
        operation_id="runs_list",
        parameters=[RunFilterSerializer],
        responses={200: RunSummarySerializer(many=True), **ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = RunFilterSerializer(data=self.request.query_params)
        if not filters.is_valid():
            raise ValidationError(filters.errors)
        runs = runs_for_token(token=self.request.auth)
        wanted = filters.validated_data
        if "pipeline" in wanted:
            runs = runs.filter(pipeline__slug=wanted["pipeline"])
        if "status" in wanted:
            runs = runs.filter(status=wanted["status"])
        if "created_after" in wanted:
            runs = runs.filter(created_at__gte=wanted["created_after"])
        if "created_before" in wanted:
            runs = runs.filter(created_at__lt=wanted["created_before"])
        return runs
