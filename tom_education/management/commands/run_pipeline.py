"""``manage.py run_pipeline``: start a pipeline from a shell and, by default, follow it to the end."""
from __future__ import annotations

import json
import sys
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tom_targets.models import Target

from tom_education import registry, services
from tom_education.models import ASYNC_STATUS_CREATED, PipelineProcess
from tom_education.templatetags.tom_education_tags import time_left

POLL_SECONDS = 0.5


def parse_option(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` as typed; the value is judged by services, with the same words as the page and the API."""
    name, sep, value = text.partition('=')
    if not sep or not name.strip():
        raise CommandError(f'--option {text!r}: write NAME=VALUE (VALUE may be empty for an optional option)')
    return name.strip(), value


def parse_flag(text: str) -> tuple[str, bool]:
    name, sep, value = text.partition('=')
    choices = {'true': True, 'false': False, 'yes': True, 'no': False, '1': True, '0': False}
    if not sep or not name or value.strip().lower() not in choices:
        raise CommandError(f'--flag {text!r}: write NAME=true or NAME=false')
    return name.strip(), choices[value.strip().lower()]


class Command(BaseCommand):
    help = 'Run a registered pipeline on a target\'s data products and follow its status and log.'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument('pipeline', help='name the pipeline is registered under in TOM_EDUCATION_PIPELINES')
        parser.add_argument('--target', required=True, help='target name (or primary key)')
        inputs = parser.add_mutually_exclusive_group(required=True)
        inputs.add_argument('--product', type=int, action='append', dest='products', metavar='ID',
                            help='data product primary key; repeat for several')
        inputs.add_argument('--all', action='store_true', help='every data product of the target')
        parser.add_argument('--flag', action='append', default=[], metavar='NAME=true|false',
                            help='set a pipeline flag; repeat for several')
        parser.add_argument('--option', action='append', default=[], metavar='NAME=VALUE',
                            help='set a pipeline option (see the pipeline\'s options in the docs or '
                                 '/api/pipelines/); repeat for several')
        parser.add_argument('--user', help='start it as this user (their permissions apply); default: no user')
        parser.add_argument('--no-wait', action='store_true', help='queue it and return at once')
        parser.add_argument('--json', action='store_true', help='print the final summary as JSON on stdout')

    def handle(self, *args: Any, **options: Any) -> None:
        user = self._user(options['user'])
        target = self._target(options['target'])
        products = self._all_accepted(options['pipeline'], user, target) if options['all'] else options['products']
        flags = dict(parse_flag(text) for text in options['flag'])
        option_values = dict(parse_option(text) for text in options['option'])
        # human-readable output goes to stderr when stdout is reserved for JSON
        self.out = self.stderr if options['json'] else self.stdout
        self.bar = ProgressPrinter(self.out, interactive=self.stderr.isatty() and not options['json'])
        try:
            process = services.start_process(
                user=user, pipeline=options['pipeline'], target=target, input_files=products, flags=flags,
                options=option_values,
            )
        except services.ProcessInputError as exc:
            raise CommandError(exc.message) from None
        self.out.write(f'Started {process.identifier} (id {process.pk})')
        if not options['no_wait']:
            self._follow(process)
        process.refresh_from_db()
        if options['json']:
            self.stdout.write(json.dumps(services.summary(process, user), indent=2))
        if process.is_final and process.state != ASYNC_STATUS_CREATED:
            self.stderr.write(f'{process.state}: {process.failure_message}')
            sys.exit(1)

    def _user(self, username: str | None) -> Any:
        if username is None:
            return None
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f'No user named "{username}".') from None

    def _target(self, name_or_pk: str) -> Target:
        target = Target.objects.filter(name=name_or_pk).first()
        pk = services.parse_pk(name_or_pk)
        if target is None and pk:
            target = Target.objects.filter(pk=pk).first()
        if target is None:
            target = Target.objects.filter(aliases__name=name_or_pk).first()
        if target is None:
            raise CommandError(f'No target named "{name_or_pk}" (by name, alias or primary key).')
        return target

    def _all_accepted(self, pipeline: str, user: Any, target: Target) -> list[int]:
        """``--all``: every product of the target the pipeline accepts (earlier outputs, a PNG say, are not)."""
        try:
            pipeline_class = registry.get(pipeline)
        except registry.UnknownPipeline as exc:
            raise CommandError(str(exc)) from None
        return [
            product.pk for product in services.visible_products(user, target).order_by('pk')
            if product.data and pipeline_class.accepts_file_name(product.data.name)
        ]

    def _follow(self, process: PipelineProcess) -> None:
        cursor, last_status = 0, None
        while True:
            process.refresh_from_db(fields=['state', 'status', 'failure_message', 'heartbeat', 'progress_report'])
            page = services.log_page(process, after=cursor)
            for line in page.lines:
                self.bar.write(f'  {line.message}')
            cursor = page.next
            if process.status != last_status:
                self.bar.write(f'[{process.state}] {process.status}')
                last_status = process.status
            self.bar.show(process.progress_info)
            if page.final:
                self.bar.finish()
                return
            if not page.lines:
                time.sleep(POLL_SECONDS)


class ProgressPrinter:
    """The run's progress in a terminal: a bar redrawn in place on a terminal, plain lines anywhere else.

    On a terminal the bar lives on the last line, and log lines are written above it. Elsewhere (a
    pipe, a log file, ``--json``) a line is printed at every tenth of the way, so logs stay short.
    """

    WIDTH = 30

    def __init__(self, out: Any, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self.drawn = ''
        self.last_tenth = -1

    def write(self, line: str) -> None:
        if self.drawn:
            self.out.write('\r\x1b[K', ending='')
        self.out.write(line)
        if self.drawn:
            self.out.write(self.drawn, ending='')
        self.out.flush()

    def show(self, progress: dict[str, Any] | None) -> None:
        if not progress or not progress['total']:
            return
        text = describe_progress(progress)
        if self.interactive:
            filled = round(progress['fraction'] * self.WIDTH)
            self.drawn = f'[{"#" * filled}{"." * (self.WIDTH - filled)}] {text}'
            self.out.write(f'\r\x1b[K{self.drawn}', ending='')
            self.out.flush()
            return
        tenth = int(progress['fraction'] * 10)
        if tenth != self.last_tenth:
            self.last_tenth = tenth
            self.out.write(f'progress: {text}')

    def finish(self) -> None:
        if self.drawn:
            self.out.write('')
            self.drawn = ''


def describe_progress(progress: dict[str, Any]) -> str:
    text = f'{progress["done"]}/{progress["total"]} ({progress["fraction"] * 100:.0f}%)'
    if progress['eta'] is not None:
        text += f', {time_left(progress["eta"])}'
    if progress['message']:
        text += f' {progress["message"]}'
    return text
