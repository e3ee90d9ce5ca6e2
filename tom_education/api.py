"""REST API: the same service functions as the pages, for scripts and notebooks.

Registered on tom_base's shared router (see ``urls.py``), so the endpoints appear under ``/api/``
of any TOM. A target or process the user may not view answers 404: its existence is not leaked.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db.models import QuerySet
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from tom_education import automation, registry, run_options, services
from tom_education.downloads import OutputFileMissing, output_file_response
from tom_education.models import STATE_CHOICES, PipelineProcess, PipelineRule

PROCESS_STATES = [value for value, _ in STATE_CHOICES]


class FlagSerializer(serializers.Serializer):
    name = serializers.CharField()
    default = serializers.BooleanField()
    long_name = serializers.CharField()


class OptionSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=run_options.OPTION_TYPES)
    default = serializers.JSONField(allow_null=True, help_text='This site\'s default (used when omitted)')
    long_name = serializers.CharField()
    required = serializers.BooleanField(help_text='False: may be left empty (null, or "" for text)')
    min = serializers.FloatField(allow_null=True, help_text='Smallest value (numbers)')
    max = serializers.FloatField(allow_null=True, help_text='Largest value (numbers)')
    step = serializers.FloatField(allow_null=True, help_text='Suggested increment (numbers)')
    choices = serializers.ListField(child=serializers.JSONField(), help_text='Allowed values (choice)')
    max_length = serializers.IntegerField(allow_null=True, help_text='Longest value (text)')
    help = serializers.CharField(allow_blank=True)


class PipelineSerializer(serializers.Serializer):
    name = serializers.CharField(help_text='The name to start it by (a key of TOM_EDUCATION_PIPELINES)')
    short_name = serializers.CharField()
    description = serializers.CharField()
    allowed_suffixes = serializers.ListField(child=serializers.CharField(), allow_null=True)
    inputs_required = serializers.BooleanField(help_text='False: the pipeline may be started with no input file')
    flags = FlagSerializer(many=True)
    options = OptionSerializer(many=True)


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField(allow_null=True, help_text='Null when the pipeline did not say')
    fraction = serializers.FloatField(allow_null=True, help_text='done / total, from 0 to 1')
    eta = serializers.FloatField(allow_null=True, help_text='Estimated seconds left while running, else null')
    message = serializers.CharField(allow_blank=True)


class OutputProductSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    product_id = serializers.CharField(allow_null=True)
    data_product_type = serializers.CharField()
    file_name = serializers.CharField()
    download = serializers.CharField(help_text='URL that streams the file (API authentication applies)')


class OutputsSerializer(serializers.Serializer):
    data_products = OutputProductSerializer(many=True)
    reduced_data = serializers.DictField(child=serializers.IntegerField(),
                                         help_text='Number of rows saved, by model name')


class LossSerializer(serializers.Serializer):
    attempt = serializers.IntegerField()
    worker = serializers.CharField(help_text='host:pid of the worker that ran the attempt')
    kind = serializers.ChoiceField(choices=['lost', 'died', 'handed back'])
    reason = serializers.CharField()
    at = serializers.DateTimeField()


class ProcessSerializer(serializers.ModelSerializer):
    """A process as listed; ``retrieve`` adds its outputs."""

    target_name = serializers.CharField(source='target.name', read_only=True)
    created_by = serializers.SlugRelatedField(slug_field='username', read_only=True, allow_null=True)
    flags = serializers.DictField(source='flag_values', child=serializers.BooleanField(), read_only=True)
    options = serializers.DictField(source='option_values', child=serializers.JSONField(), read_only=True)
    progress = serializers.SerializerMethodField(help_text='The last progress the pipeline reported, or null')
    waiting = serializers.SerializerMethodField(
        help_text='Why a pending run is not starting, when the TOM can tell (no worker consumes its queue), else ""'
    )
    losses = LossSerializer(many=True, read_only=True,
                            help_text='Earlier attempts lost through no fault of the pipeline (retried automatically)')
    input_files = serializers.SerializerMethodField(help_text='Primary keys of the inputs you may view')
    final = serializers.BooleanField(source='is_final', read_only=True)
    page = serializers.CharField(source='get_absolute_url', read_only=True)
    triggered_by_rule = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text='The automatic-run rule that started it (see /api/pipelinerules/)')
    triggered_by_process = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text='The run whose success started it, for a chain')

    class Meta:
        model = PipelineProcess
        fields = [
            'id', 'identifier', 'pipeline', 'target', 'target_name', 'state', 'status', 'waiting', 'final',
            'failure_message', 'progress', 'attempts', 'losses', 'flags', 'options', 'input_files', 'created_by',
            'created', 'started', 'finished', 'group', 'page', 'triggered_by_rule', 'triggered_by_process',
        ]
        read_only_fields = fields

    @extend_schema_field(ProgressSerializer(allow_null=True))
    def get_progress(self, process: PipelineProcess) -> dict[str, Any] | None:
        return process.progress_info

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_input_files(self, process: PipelineProcess) -> list[int]:
        return [product.pk for product in services.visible_inputs(self.context['request'].user, process)]

    def get_waiting(self, process: PipelineProcess) -> str:
        return services.waiting_reason(process)


class ProcessDetailSerializer(ProcessSerializer):
    outputs = serializers.SerializerMethodField()

    class Meta(ProcessSerializer.Meta):
        fields = [*ProcessSerializer.Meta.fields, 'outputs']
        read_only_fields = fields

    @extend_schema_field(OutputsSerializer)
    def get_outputs(self, process: PipelineProcess) -> dict[str, Any]:
        request = self.context['request']
        return {
            'data_products': [
                {
                    'id': product.pk,
                    'product_id': product.product_id,
                    'data_product_type': product.data_product_type,
                    'file_name': services.product_file_name(product),
                    'download': request.build_absolute_uri(reverse(
                        'api:pipelineprocesses-output', kwargs={'pk': process.pk, 'product_pk': product.pk}
                    )),
                }
                for product in services.visible_outputs(request.user, process)
            ],
            'reduced_data': {name: queryset.count() for name, queryset in process.output_reduced_data().items()},
        }


class StartProcessSerializer(serializers.Serializer):
    pipeline = serializers.CharField(max_length=200, help_text='Name of a registered pipeline (see /api/pipelines/)')
    target = serializers.IntegerField(min_value=1, max_value=services.MAX_PK,
                                      help_text='Primary key of a target you may view')
    input_files = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=services.MAX_PK),
                                        allow_empty=True, max_length=services.MAX_INPUT_FILES,
                                        help_text='Primary keys of the target\'s data products')
    flags = serializers.DictField(child=serializers.JSONField(), required=False, default=dict,
                                  help_text='Flag name -> true/false; omitted flags take their defaults')
    options = serializers.DictField(child=serializers.JSONField(allow_null=True), required=False, default=dict,
                                    help_text='Option name -> value (see /api/pipelines/); omitted options take '
                                              'their defaults')


class LogLineSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    created = serializers.DateTimeField()
    level = serializers.IntegerField()
    message = serializers.CharField()


class LogPageSerializer(serializers.Serializer):
    lines = LogLineSerializer(many=True)
    next = serializers.IntegerField(help_text='Pass as ?after= to get only newer lines')
    state = serializers.ChoiceField(choices=STATE_CHOICES)
    status = serializers.CharField()
    final = serializers.BooleanField(help_text='True once the process has ended and every line is written')


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


QueueUnavailableSerializer = inline_serializer('QueueUnavailable', {
    'detail': serializers.CharField(),
    'process': ProcessSerializer(),
})

def documented(**schema: Any) -> Any:
    """``extend_schema`` for a method, on drf-spectacular's AutoSchema even where the TOM's
    ``REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS']`` is DRF's own (tom_base's default): no setting to add."""
    def decorate(method: Any) -> Any:
        method.schema = AutoSchema
        return extend_schema(**schema)(method)
    return decorate


FIELD_ERRORS = OpenApiResponse(OpenApiTypes.OBJECT, description='Field name -> list of messages')
NOT_FOUND = OpenApiResponse(ErrorSerializer, description='No such object, or you may not view it')
UNAUTHENTICATED = OpenApiResponse(ErrorSerializer, description='Authentication is required')


#: Deepest nesting of arrays and objects a request body may have (ours need two or three levels).
MAX_JSON_DEPTH = 20


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and dicts, measured without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                break
            todo.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies nested too deeply for Python (a RecursionError is a 500 otherwise)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
            too_deep = json_depth(data) > MAX_JSON_DEPTH
        except RecursionError:
            too_deep = True
        if too_deep:
            raise ParseError(f'JSON parse error - the body nests arrays or objects more than {MAX_JSON_DEPTH} '
                             'levels deep.')
        return data


class ProcessPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


class JSONLimitErrorsMixin:
    """Bodies over Django's size limits answer in JSON like every other error here, never an HTML page."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, RequestDataTooBig):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return Response(
                {'detail': f'The request body is larger than this TOM accepts ({limit} bytes, '
                           'DATA_UPLOAD_MAX_MEMORY_SIZE). Send fewer or shorter values.'},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
            limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
            return Response(
                {'detail': f'The form has more fields than this TOM accepts ({limit}, DATA_UPLOAD_MAX_NUMBER_FIELDS). '
                           'Send the request as JSON, where a list of ids is one field.'},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return super().handle_exception(exc)


class ParsedPkMixin:
    """A malformed or out-of-range id is simply not found (never an overflow in the database)."""

    def get_object(self) -> Any:
        pk = services.parse_pk(self.kwargs.get('pk'))
        if pk is None:
            raise NotFound()
        self.kwargs['pk'] = pk
        return super().get_object()


def pk_param(params: Any, name: str) -> int | None:
    """The id in query parameter ``name``, None when absent; a malformed one is refused by field."""
    if not params.get(name):
        return None
    pk = services.parse_pk(params[name])
    if pk is None:
        raise ValidationError({name: [f'A {name} id is a whole number from 1 to 2147483647.']})
    return pk


@extend_schema(responses={200: PipelineSerializer(many=True), 401: UNAUTHENTICATED, 403: UNAUTHENTICATED})
class PipelineViewSet(viewsets.ViewSet):
    """The pipelines this TOM offers."""

    schema = AutoSchema()
    permission_classes = [IsAuthenticated]

    def list(self, request: Request) -> Response:
        data = [
            {
                'name': name,
                'short_name': pipeline_class.short_name,
                'description': pipeline_class.describe(),
                'allowed_suffixes': pipeline_class.allowed_suffixes,
                'inputs_required': pipeline_class.inputs_required,
                'flags': [
                    {'name': flag, 'default': default, 'long_name': label}
                    for flag, default, label in pipeline_class.flag_specs()
                ],
                'options': [spec.describe() for spec in services.option_specs(name, pipeline_class)],
            }
            for name, pipeline_class in registry.pipelines().items()
        ]
        return Response(PipelineSerializer(data, many=True).data)


class ProcessViewSet(JSONLimitErrorsMixin, ParsedPkMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     mixins.CreateModelMixin, viewsets.GenericViewSet):
    """Processes on targets you may view: list, inspect, start, follow the log, cancel, re-run."""

    schema = AutoSchema()
    permission_classes = [IsAuthenticated]
    pagination_class = ProcessPagination
    # any text reaches the view, so a malformed id answers a JSON 404 rather than Django's HTML one
    lookup_value_regex = '[^/]+'

    serializer_class = ProcessSerializer
    parser_classes = [BoundedJSONParser, FormParser, MultiPartParser]

    def get_queryset(self) -> QuerySet:
        processes = services.visible_processes(self.request.user)
        if self.action == 'retrieve':
            return processes.prefetch_related('input_files')
        if self.action != 'list':
            return processes
        processes = processes.prefetch_related('input_files')
        params = self.request.query_params
        target = pk_param(params, 'target')
        if target is not None:
            processes = processes.filter(target_id=target)
        if params.get('state'):
            if params['state'] not in PROCESS_STATES:
                raise ValidationError({'state': [f'Choose one of: {", ".join(PROCESS_STATES)}.']})
            processes = processes.filter(state=params['state'])
        if params.get('pipeline'):
            processes = processes.filter(pipeline=params['pipeline'])
        rule = pk_param(params, 'rule')
        if rule is not None:
            processes = processes.filter(triggered_by_rule_id=rule)
        return processes

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return ProcessDetailSerializer if self.action == 'retrieve' else ProcessSerializer

    @documented(
        parameters=[
            OpenApiParameter('target', int, description='Only processes of this target'),
            OpenApiParameter('state', str, enum=PROCESS_STATES, description='Only processes in this state'),
            OpenApiParameter('pipeline', str, description='Only processes of this pipeline'),
            OpenApiParameter('rule', int, description='Only processes started by this automatic-run rule'),
        ],
        responses={200: ProcessSerializer(many=True), 400: FIELD_ERRORS, 401: UNAUTHENTICATED,
                   403: UNAUTHENTICATED},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @documented(responses={200: ProcessDetailSerializer, 401: UNAUTHENTICATED, 403: UNAUTHENTICATED,
                              404: NOT_FOUND})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @documented(
        request=StartProcessSerializer,
        responses={
            201: ProcessSerializer,
            400: FIELD_ERRORS,
            401: UNAUTHENTICATED, 403: UNAUTHENTICATED,
            503: OpenApiResponse(QueueUnavailableSerializer, description='The task queue could not be reached; '
                                 'the process is kept, marked failed'),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        start = StartProcessSerializer(data=request.data)
        start.is_valid(raise_exception=True)
        try:
            process = services.start_process(user=request.user, **start.validated_data)
        except services.ProcessInputError as exc:
            raise input_error(exc) from None
        return self._started(process)

    def _started(self, process: PipelineProcess) -> Response:
        body = ProcessSerializer(process, context=self.get_serializer_context()).data
        if process.is_final:  # only a queue failure ends a process before a worker saw it
            return Response({'detail': process.failure_message, 'process': body},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(body, status=status.HTTP_201_CREATED)

    @documented(
        parameters=[
            OpenApiParameter('after', int, description='Return lines with a sequence number above this (default 0)'),
            OpenApiParameter('limit', int, description='At most this many lines (default 1000, at most 10000)'),
        ],
        responses={200: LogPageSerializer, 400: FIELD_ERRORS, 401: UNAUTHENTICATED, 403: UNAUTHENTICATED,
                   404: NOT_FOUND},
    )
    @action(detail=True, methods=['get'])
    def log(self, request: Request, pk: str | None = None) -> Response:
        """Log lines after a cursor, the next cursor and the current state."""
        process = self.get_object()
        after = _bounded_int(request.query_params.get('after'), 'after', 0, 0, 2**31 - 1)
        limit = _bounded_int(request.query_params.get('limit'), 'limit', 1000, 1, 10_000)
        page = services.log_page(process, after=after, limit=limit)
        return Response(LogPageSerializer({
            'lines': page.lines, 'next': page.next, 'state': process.state, 'status': process.status,
            'final': page.final,
        }).data)

    @documented(request=None, responses={200: ProcessSerializer, 401: UNAUTHENTICATED, 403: ErrorSerializer,
                                            404: NOT_FOUND})
    @action(detail=True, methods=['post'])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a pending process, or ask the worker to stop a running one (owner or superuser only)."""
        process = self.get_object()
        try:
            services.cancel_process(process, user=request.user)
        except services.NotAllowed as exc:
            raise PermissionDenied(str(exc)) from None
        process.refresh_from_db()
        return Response(ProcessSerializer(process, context=self.get_serializer_context()).data)

    @documented(request=None, responses={201: ProcessSerializer, 400: FIELD_ERRORS, 401: UNAUTHENTICATED,
                                            403: UNAUTHENTICATED, 404: NOT_FOUND, 503: QueueUnavailableSerializer})
    @action(detail=True, methods=['post'])
    def rerun(self, request: Request, pk: str | None = None) -> Response:
        """Start the same pipeline again on the same inputs with the same flags, as you."""
        try:
            process = services.rerun_process(user=request.user, process=self.get_object())
        except services.ProcessInputError as exc:
            raise input_error(exc) from None
        return self._started(process)

    @documented(responses={(200, '*/*'): OpenApiTypes.BINARY, 401: UNAUTHENTICATED,
                              403: UNAUTHENTICATED, 404: NOT_FOUND})
    @action(detail=True, methods=['get'], url_path=r'outputs/(?P<product_pk>[^/]+)')
    def output(self, request: Request, pk: str | None = None, product_pk: str | None = None) -> FileResponse:
        """Download one output file of the process, from whatever storage holds it.

        Images, movies and plain text come inline (a browser shows them), anything else as an attachment.
        """
        product = services.visible_output(request.user, self.get_object(), product_pk)
        if product is None:
            raise NotFound()
        try:
            return output_file_response(product)
        except OutputFileMissing as exc:
            raise NotFound(exc.message) from None


class LastRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    identifier = serializers.CharField()
    state = serializers.ChoiceField(choices=STATE_CHOICES)
    created = serializers.DateTimeField()


class RuleSerializer(serializers.Serializer):
    """An automatic-run rule, as ``automation.save_rule`` takes it; the app keeps the read-only fields."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=200)
    owner = serializers.SlugRelatedField(slug_field='username', read_only=True)
    target = serializers.IntegerField(
        source='target_id', min_value=1, max_value=services.MAX_PK, allow_null=True, required=False, default=None,
        help_text='Only this target; null with a null target_list: every target you may view')
    target_list = serializers.IntegerField(
        source='target_list_id', min_value=1, max_value=services.MAX_PK, allow_null=True, required=False,
        default=None, help_text='Only the targets of this target list (group)')
    pipeline = serializers.CharField(max_length=100, help_text='The pipeline to run (see /api/pipelines/)')
    trigger = serializers.ChoiceField(choices=PipelineRule.TRIGGERS, default=PipelineRule.NEW_DATA)
    after_pipeline = serializers.CharField(max_length=100, allow_blank=True, default='',
                                           help_text='For trigger "run": the pipeline whose successful runs fire it')
    data_product_type = serializers.CharField(max_length=100, allow_blank=True, default='')
    suffix = serializers.CharField(max_length=32, allow_blank=True, default='')
    header_keyword = serializers.CharField(max_length=70, allow_blank=True, default='',
                                           help_text='Match only FITS files with this header keyword')
    header_value = serializers.CharField(max_length=70, allow_blank=True, default='',
                                         help_text='... whose value is this (case and spaces ignored)')
    inputs = serializers.ChoiceField(choices=PipelineRule.INPUTS, default=PipelineRule.ONLY_NEW)
    quiet_period = serializers.FloatField(min_value=0, max_value=7 * 86400, default=120.0,
                                          help_text='Seconds without a new arrival before the arrivals make one run')
    flags = serializers.DictField(source='flag_values', child=serializers.BooleanField(), default=dict)
    options = serializers.DictField(source='option_values', child=serializers.JSONField(allow_null=True),
                                    default=dict)
    paused = serializers.BooleanField(default=False)
    created = serializers.DateTimeField(read_only=True)
    last_fired = serializers.DateTimeField(read_only=True, allow_null=True)
    last_error = serializers.CharField(read_only=True)
    last_run = serializers.SerializerMethodField(help_text='The newest run it started, or null')

    @extend_schema_field(LastRunSerializer(allow_null=True))
    def get_last_run(self, rule: PipelineRule) -> dict[str, Any] | None:
        run = automation.rule_runs(rule).only('pk', 'identifier', 'state', 'created').first()
        if run is None:
            return None
        return {'id': run.pk, 'identifier': run.identifier, 'state': run.state, 'created': run.created}


#: The API's names for the fields of ``automation.RuleInputError`` that it renames.
RULE_FIELD_NAMES = {'flag_values': 'flags', 'option_values': 'options'}


class RuleViewSet(JSONLimitErrorsMixin, ParsedPkMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                  viewsets.GenericViewSet):
    """Your automatic-run rules (every rule for a superuser): list, create, change, pause, delete."""

    schema = AutoSchema()
    permission_classes = [IsAuthenticated]
    pagination_class = ProcessPagination
    serializer_class = RuleSerializer
    parser_classes = [BoundedJSONParser, FormParser, MultiPartParser]
    lookup_value_regex = '[^/]+'

    def get_queryset(self) -> QuerySet:
        rules = automation.visible_rules(self.request.user)
        target = pk_param(self.request.query_params, 'target') if self.action == 'list' else None
        return rules if target is None else automation.rules_on(rules, target)

    @documented(parameters=[OpenApiParameter('target', int, description='Only rules whose scope covers this target')],
                responses={200: RuleSerializer(many=True), 400: FIELD_ERRORS, 401: UNAUTHENTICATED,
                           403: UNAUTHENTICATED})
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @documented(responses={200: RuleSerializer, 401: UNAUTHENTICATED, 403: UNAUTHENTICATED, 404: NOT_FOUND})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @documented(request=RuleSerializer, responses={201: RuleSerializer, 400: FIELD_ERRORS, 401: UNAUTHENTICATED,
                                                      403: UNAUTHENTICATED})
    def create(self, request: Request) -> Response:
        rule = self._save(request, None, partial=False)
        return Response(RuleSerializer(rule).data, status=status.HTTP_201_CREATED)

    @documented(request=RuleSerializer, responses={200: RuleSerializer, 400: FIELD_ERRORS, 401: UNAUTHENTICATED,
                                                      403: UNAUTHENTICATED, 404: NOT_FOUND})
    def update(self, request: Request, pk: str | None = None) -> Response:
        return Response(RuleSerializer(self._save(request, self.get_object(), partial=False)).data)

    @documented(request=RuleSerializer, responses={200: RuleSerializer, 400: FIELD_ERRORS, 401: UNAUTHENTICATED,
                                                      403: UNAUTHENTICATED, 404: NOT_FOUND})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return Response(RuleSerializer(self._save(request, self.get_object(), partial=True)).data)

    @documented(responses={204: None, 401: UNAUTHENTICATED, 403: UNAUTHENTICATED, 404: NOT_FOUND})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Delete the rule; the runs it started are kept."""
        self.get_object().delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _save(self, request: Request, rule: PipelineRule | None, *, partial: bool) -> PipelineRule:
        given = RuleSerializer(data=request.data, partial=partial)
        given.is_valid(raise_exception=True)
        values = {('target' if name == 'target_id' else 'target_list' if name == 'target_list_id' else name): value
                  for name, value in given.validated_data.items()}
        try:
            return automation.save_rule(request.user, values, rule)
        except automation.RuleInputError as exc:
            errors: dict[str, Any] = {RULE_FIELD_NAMES.get(name, name): messages
                                      for name, messages in exc.errors.items()}
            if exc.option_errors:
                errors['options'] = exc.option_errors
            raise ValidationError(errors) from None


def input_error(exc: services.ProcessInputError) -> ValidationError:
    """The API's form of a refused request: the field at fault (and, for an option, which one) -> messages."""
    if exc.option:
        return ValidationError({exc.field: {exc.option: [exc.message]}})
    return ValidationError({exc.field or 'non_field_errors': [exc.message]})


def _bounded_int(raw: str | None, name: str, default: int, lowest: int, highest: int) -> int:
    if raw is None or raw == '':
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: [f'{name} must be an integer.']}) from None
    if not lowest <= value <= highest:
        raise ValidationError({name: [f'{name} must be between {lowest} and {highest}.']})
    return value
