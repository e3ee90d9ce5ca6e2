"""Pages: thin shells over ``services``; every lookup goes through the user's visible targets.

An object the user may not view answers 404, exactly like one that does not exist, so pages never
tell which processes or targets exist; anonymous users are sent to the login page first.
"""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import DetailView, ListView
from tom_targets.models import Target

from tom_education import automation, registry, services
from tom_education.downloads import OutputFileMissing, output_file_response
from tom_education.forms import RuleForm, RunForm
from tom_education.models import ASYNC_STATUS_FAILED, STATE_CHOICES, PipelineProcess, PipelineRule
from tom_education.tabs import pipeline_choices, run_form_context, target_processes_context

#: Log lines the process page shows when it opens (the most recent ones).
PAGE_LOG_LINES = 2000


def get_visible(visible: QuerySet, pk: Any) -> Model:
    """The object ``pk`` among those the user may see; 404 otherwise, whether it exists or not."""
    pk = services.parse_pk(pk)
    found = visible.filter(pk=pk).first() if pk is not None else None
    if found is None:
        raise Http404
    return found


class VisibleProcessMixin(LoginRequiredMixin):
    def get_object(self, queryset: QuerySet | None = None) -> PipelineProcess:
        return get_visible(services.visible_processes(self.request.user), self.kwargs['pk'])


class ProcessDetailView(VisibleProcessMixin, DetailView):
    """``/pipeline/<pk>``: status, log and outputs of one process, complete on first render."""

    template_name = 'tom_education/process_detail.html'
    context_object_name = 'process'

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        process = self.object
        services.refresh_if_lost(process)
        # the page opens on the end of the log; the whole of a long one is a download away
        lines = services.log_tail(process, PAGE_LOG_LINES)
        user = self.request.user
        context.update({
            'log_lines': lines,
            'earlier_lines': lines[0].seq - 1 if lines else 0,
            'cursor': lines[-1].seq if lines else 0,
            'inputs': sorted(
                ((product, services.product_file_name(product)) for product in services.visible_inputs(user, process)),
                key=lambda item: item[1],
            ),
            'outputs': [
                (product, services.product_file_name(product))
                for product in services.visible_outputs(user, process)
            ],
            'reduced_outputs': {name: qs.count() for name, qs in process.output_reduced_data().items()},
            'waiting': services.waiting_reason(process),
            'may_cancel': process.is_active and services.may_cancel(user, process),
            'show_traceback': bool(process.traceback) and services.may_cancel(user, process),
            'may_see_rule': bool(process.triggered_by_rule_id) and automation.visible_rules(user).filter(
                pk=process.triggered_by_rule_id).exists(),
        })
        return context


class ProcessLogView(VisibleProcessMixin, View):
    """New log lines after ``?after=<seq>`` and the current status, for the page's poller."""

    def get(self, request: HttpRequest, pk: int) -> JsonResponse:
        process = self.get_object()
        page = services.log_page(process, after=services.parse_pk(request.GET.get('after', '')) or 0)
        return JsonResponse({
            'progress': process.progress_info,
            'lines': [{'seq': line.seq, 'message': line.message, 'level': line.level} for line in page.lines],
            'next': page.next,
            'state': process.state,
            'state_display': process.get_state_display(),
            'status': process.status,
            'waiting': services.waiting_reason(process),
            'failure_message': process.failure_message,
            'final': page.final,
        })


class ProcessOutputView(VisibleProcessMixin, View):
    """One output file of the process, after the same checks as the page: the only link pages give to a file."""

    def get(self, request: HttpRequest, pk: int, product_pk: str) -> HttpResponse:
        product = services.visible_output(request.user, self.get_object(), product_pk)
        if product is None:
            raise Http404
        try:
            return output_file_response(product)
        except OutputFileMissing as exc:
            return HttpResponse(exc.message, status=404, content_type='text/plain; charset=utf-8')


class ProcessLogDownloadView(VisibleProcessMixin, View):
    """The whole log as plain text, streamed: however long it grew, memory stays flat."""

    def get(self, request: HttpRequest, pk: int) -> StreamingHttpResponse:
        process = self.get_object()
        lines = process.log_lines.order_by('seq').values_list('message', flat=True).iterator(chunk_size=2000)
        response = StreamingHttpResponse((f'{line}\n' for line in lines), content_type='text/plain; charset=utf-8')
        response['Content-Disposition'] = f'attachment; filename="{process.identifier}.log"'
        return response


class ProcessCancelView(VisibleProcessMixin, View):
    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        process = self.get_object()
        try:
            services.cancel_process(process, user=request.user)
        except services.NotAllowed:
            raise PermissionDenied from None
        return redirect(process)


class ProcessRerunView(VisibleProcessMixin, View):
    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        process = self.get_object()
        try:
            new_process = services.rerun_process(user=request.user, process=process)
        except services.ProcessInputError as exc:
            # e.g. an input was deleted since, or the pipeline was unregistered
            messages.error(request, f'Could not re-run: {exc.message}')
            return redirect(process)
        return redirect(new_process)


class TargetRunView(LoginRequiredMixin, View):
    """POST target of the tab's form: start a process, or show the form again with the error next to it."""

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        target = get_visible(services.visible_targets(request.user), pk)
        form = RunForm.from_post(request.POST)
        try:
            process = services.start_process(
                user=request.user, pipeline=form.pipeline, target=target, input_files=form.products,
                flags=form.flags, options=form.options,
            )
        except services.ProcessInputError as exc:
            return self.form_again(request, target, form, exc.message, exc.field or '', exc.option or '')
        if process.state == ASYNC_STATUS_FAILED:
            return self.form_again(request, target, form, process.failure_message, 'queue')
        return redirect(process)

    def form_again(self, request: HttpRequest, target: Target, form: RunForm, error: str, field: str,
                   option: str = '') -> HttpResponse:
        context = run_form_context(request.user, target, form, error, field, option)
        template = 'tom_education/partials/run_form.html' if request.htmx else 'tom_education/run_form_page.html'
        return render(request, template, context, status=200 if request.htmx else 400)


class TargetProcessesView(LoginRequiredMixin, View):
    """The target's processes, refreshed by the tab while any of them is active."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        target = get_visible(services.visible_targets(request.user), pk)
        return render(request, 'tom_education/partials/target_processes.html',
                      target_processes_context(request.user, target))


class ProcessListView(LoginRequiredMixin, ListView):
    """All processes the user may see, across targets, filterable by status and pipeline.

    While any listed process is active the table refreshes itself (an htmx request gets the table alone).
    """

    template_name = 'tom_education/process_list.html'

    def get_template_names(self) -> list[str]:
        if self.request.htmx:
            return ['tom_education/partials/process_list_rows.html']
        return [self.template_name]
    context_object_name = 'processes'
    paginate_by = 25

    def get_queryset(self) -> QuerySet:
        processes = services.listed_processes(self.request.user)
        state = self.request.GET.get('state', '')
        pipeline = self.request.GET.get('pipeline', '')
        if state:
            processes = processes.filter(state=state)
        if pipeline:
            processes = processes.filter(pipeline=pipeline)
        return processes

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        query = self.request.GET.copy()
        query.pop('page', None)
        context.update({
            'states': STATE_CHOICES,
            'pipeline_names': sorted(set(registry.pipelines()) | set(
                services.visible_processes(self.request.user).order_by().values_list('pipeline', flat=True).distinct()
            )),
            'any_active': any(process.is_active for process in context['processes']),
            'rules': automation.with_last_run(automation.visible_rules(self.request.user), limit=100),
            'current_state': self.request.GET.get('state', ''),
            'current_pipeline': self.request.GET.get('pipeline', ''),
            'filter_query': query.urlencode(),
        })
        return context


# --- automatic-run rules ------------------------------------------------------------------------

def rule_form_context(form: RuleForm, rule: PipelineRule | None, target: Target | None) -> dict[str, Any]:
    """What the rule form needs: the pipelines with their flags and options, and the choices of each field."""
    from tom_dataproducts import models as dataproduct_models
    from tom_targets.models import TargetList

    option_errors = form.errors.get('option_values', [''])
    return {
        'rule': rule,
        'target': target,
        'form': form,
        'errors': form.errors,
        'pipelines': pipeline_choices(form.run, option_errors[0], form.error_option),
        'error_messages': [message for messages in form.errors.values() for message in messages],
        'pipeline_names': list(registry.pipelines()),
        'triggers': PipelineRule.TRIGGERS,
        'input_choices': PipelineRule.INPUTS,
        'product_types': list(dataproduct_models.DATA_TYPE_CHOICES),
        'target_lists': TargetList.objects.order_by('name'),
    }


def _rule_page(request: HttpRequest, form: RuleForm, rule: PipelineRule | None, target: Target | None,
               status: int = 200) -> HttpResponse:
    context = rule_form_context(form, rule, target)
    if rule is not None:
        context['runs'] = automation.rule_runs(rule).filter(
            target__in=services.visible_targets(request.user)).select_related('target')[:20]
    return render(request, 'tom_education/rule.html', context, status=status)


def _save_rule(request: HttpRequest, rule: PipelineRule | None, target: Target | None) -> HttpResponse:
    form = RuleForm.from_post(request.POST, target.pk if target else None)
    if not form.errors:
        try:
            saved = automation.save_rule(request.user, form.values, rule)
        except automation.RuleInputError as exc:
            form.errors = exc.errors
            form.error_option = next(iter(exc.option_errors), '')
        else:
            messages.success(request, f'Rule "{saved.name}" saved.')
            return redirect(saved)
    return _rule_page(request, form, rule, target, status=400)


class TargetRuleCreateView(LoginRequiredMixin, View):
    """``/pipeline/target/<pk>/rules/new/``: a new automatic-run rule, from the target's Pipelines tab."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        target = get_visible(services.visible_targets(request.user), pk)
        return _rule_page(request, RuleForm(), None, target)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        return _save_rule(request, None, get_visible(services.visible_targets(request.user), pk))


class VisibleRuleMixin(LoginRequiredMixin):
    def get_rule(self) -> PipelineRule:
        return get_visible(automation.visible_rules(self.request.user), self.kwargs['pk'])

    def rule_target(self, rule: PipelineRule) -> Target | None:
        """The rule's one target, if the user may still view it."""
        if rule.target_id is None:
            return None
        return services.visible_targets(self.request.user).filter(pk=rule.target_id).first()


class RuleDetailView(VisibleRuleMixin, View):
    """``/pipeline/rule/<pk>/``: what a rule does, what it started, its last error; edit it."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        rule = self.get_rule()
        return _rule_page(request, RuleForm.from_rule(rule), rule, self.rule_target(rule))

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        rule = self.get_rule()
        return _save_rule(request, rule, self.rule_target(rule))


def _back(request: HttpRequest, default: str) -> HttpResponse:
    """Back where the button was (a page of this site), else ``default``."""
    target = request.POST.get('next', '')
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(default)


class RulePauseView(VisibleRuleMixin, View):
    """Pause (``paused=1``) or resume a rule."""

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        rule = self.get_rule()
        automation.set_paused(rule, request.POST.get('paused') == '1')
        return _back(request, rule.get_absolute_url())


class RuleDeleteView(VisibleRuleMixin, View):
    """Delete a rule; the runs it started stay."""

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        rule = self.get_rule()
        default = reverse('targets:detail', kwargs={'pk': rule.target_id}) if rule.target_id else \
            reverse('tom_education:process_list')
        rule.delete()
        messages.success(request, f'Rule "{rule.name}" deleted.')
        return _back(request, default)
