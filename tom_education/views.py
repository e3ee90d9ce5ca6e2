"""Pages: thin shells over ``services``; every lookup goes through the user's visible targets."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views import View
from django.views.generic import DetailView

from tom_education import services


class VisibleProcessMixin(LoginRequiredMixin):
    def get_queryset(self) -> Any:
        return services.visible_processes(self.request.user)


class ProcessDetailView(VisibleProcessMixin, DetailView):
    """``/pipeline/<pk>``: status, log and outputs of one process, complete on first render."""

    template_name = 'tom_education/process_detail.html'
    context_object_name = 'process'

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        process = self.object
        services.reap_stale_processes()
        process.refresh_from_db()
        lines = services.log_lines(process, limit=10_000)
        context.update({
            'log_lines': lines,
            'cursor': lines[-1].seq if lines else 0,
            'inputs': [(product, services.product_file_name(product)) for product in process.input_files.all()],
            'outputs': list(process.output_products()),
            'show_traceback': bool(process.traceback) and (
                self.request.user.is_superuser or process.created_by_id == self.request.user.pk
            ),
        })
        return context


class ProcessLogView(VisibleProcessMixin, View):
    """New log lines after ``?after=<seq>`` and the current status, for the page's poller."""

    def get(self, request: HttpRequest, pk: int) -> JsonResponse:
        process = get_object_or_404(self.get_queryset(), pk=pk)
        try:
            after = max(int(request.GET.get('after', 0)), 0)
        except ValueError:
            after = 0
        lines = services.log_lines(process, after=after)
        return JsonResponse({
            'lines': [{'seq': line.seq, 'message': line.message, 'level': line.level} for line in lines],
            'next': lines[-1].seq if lines else after,
            'state': process.state,
            'status': process.status,
            'failure_message': process.failure_message,
            'final': process.is_final,
        })
