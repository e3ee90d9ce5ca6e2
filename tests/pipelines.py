"""Pipelines the tests drive: each run does what the JSON in its first input file asks for.

One registered class covers every engine behaviour under test (crashes, bad outputs, a killed
worker, Python logging, long runs) without registering dozens of classes.
"""
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from tom_dataproducts.models import DataProduct, ReducedDatum

from tom_education.models import AsyncError, PipelineOutput, PipelineProcess

OUTPUT_TYPES = {'DataProduct': DataProduct, 'ReducedDatum': ReducedDatum}


class Scripted(PipelineProcess):
    short_name = 'scripted'
    allowed_suffixes = ['.json']
    flags = {'shout': {'default': False, 'long_name': 'Log in capitals'}}

    class Meta:
        proxy = True
        app_label = 'tests'

    def do_pipeline(self, tmpdir, **flags):
        script = json.loads(self.input_path(self.input_files.order_by('pk').first()).read_text())
        self.log(f'tmpdir={tmpdir}')
        if flags['shout']:
            self.log('SHOUTING')
        for step in script.get('steps', []):
            self.run_step(step, tmpdir)
        return [self.make_output(tmpdir, spec) for spec in script.get('outputs', [])]

    def run_step(self, step, tmpdir):
        action = step['action']
        if action == 'log':
            for number in range(step.get('count', 1)):
                self.log(f'{step.get("text", "line")} {number}')
        elif action == 'logging':
            logging.getLogger('some.library').warning('library says %s', step['text'])
        elif action == 'status':
            with self.update_status(step['text']):
                time.sleep(step.get('seconds', 0))
        elif action == 'sleep':
            deadline = time.monotonic() + step['seconds']
            while time.monotonic() < deadline:
                time.sleep(0.05)
                if step.get('log'):
                    self.log('still working')
        elif action == 'wait_for_file':
            while not Path(step['path']).exists():
                time.sleep(0.05)
        elif action == 'spawn':
            # a shell that starts a grandchild and waits: the run is blocked in a wait on its child
            shell = subprocess.Popen(['sh', '-c', 'sleep 300 & echo $!; wait'], stdout=subprocess.PIPE, text=True)
            self.log(f'child={shell.pid} grandchild={shell.stdout.readline().strip()}')
            shell.wait()
        elif action == 'crash':
            return 1 / 0
        elif action == 'fail':
            raise AsyncError(step['text'])
        elif action == 'kill_worker':
            marker = Path(step['marker'])
            if step.get('always') or not marker.exists():
                marker.write_text('killed once')
                os.kill(os.getpid(), signal.SIGKILL)
        else:
            raise ValueError(f'unknown test step {action}')

    def make_output(self, tmpdir, spec):
        path = Path(spec['path']) if spec.get('absolute') else tmpdir / spec['name']
        if 'content' in spec:
            path.write_text(spec['content'])
        if 'bytes' in spec:
            path.write_bytes(bytes.fromhex(spec['bytes']))
        output_type = OUTPUT_TYPES[spec['type']]
        if spec.get('as_tuple'):
            return (path, output_type) if spec.get('tag') is None else (path, output_type, spec['tag'])
        return PipelineOutput(path, output_type, spec.get('tag'))


class FaultScripted(Scripted):
    """``Scripted`` on its own queue, served by the workers the fault tests start and kill."""

    queue = f'{os.environ.get("TOM_EDUCATION_TEST_QUEUE", "tests")}_faults'

    class Meta:
        proxy = True
        app_label = 'tests'


class Slow(PipelineProcess):
    """Sleeps for a minute: longer than the time limits the timeout tests set."""

    short_name = 'slow'
    flags = {'ignore_soft_limit': {'default': False, 'long_name': 'Keep going after the soft time limit'}}

    class Meta:
        proxy = True
        app_label = 'tests'

    def do_pipeline(self, tmpdir, **flags):
        self.log(f'tmpdir={tmpdir}')
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                time.sleep(0.1)
            except BaseException:
                if not flags['ignore_soft_limit']:
                    raise
        return []


class Countdown(PipelineProcess):
    """Counts for a few seconds, logging as it goes, then saves a summary: what a browser test can watch."""

    short_name = 'countdown'
    allowed_suffixes = ['.fits']
    flags = {
        'slowly': {'default': True, 'long_name': 'Take a few seconds'},
        'until_cancelled': {'default': False, 'long_name': 'Keep counting until cancelled'},
    }

    class Meta:
        proxy = True
        app_label = 'tests'

    def do_pipeline(self, tmpdir, **flags):
        names = sorted(Path(product.data.name).name for product in self.input_files.all())
        ticks = 600 if flags['until_cancelled'] else (10 if flags['slowly'] else 1)
        with self.update_status(f'Counting over {len(names)} files'):
            for number in range(1, ticks + 1):
                self.log(f'tick {number}')
                time.sleep(0.4 if flags['slowly'] or flags['until_cancelled'] else 0)
        summary = tmpdir / 'summary.txt'
        summary.write_text('\n'.join(names))
        return [(summary, DataProduct)]


class Tunable(PipelineProcess):
    """Options of every type: saves what ``do_pipeline`` received, after reporting progress over its steps."""

    short_name = 'tunable'
    allowed_suffixes = ['.json', '.fits']
    flags = {'verbose': {'default': False, 'long_name': 'Log every step'}}
    options = {
        'radius': {'type': 'float', 'default': None, 'min': 0.5, 'max': 100, 'required': False,
                   'long_name': 'Aperture radius (px); empty = 2 x FWHM'},
        'fps': {'type': 'int', 'default': 10, 'min': 1, 'max': 60, 'long_name': 'Frames per second'},
        'format': {'type': 'choice', 'choices': ['gif', 'mp4', 'webm'], 'default': 'gif',
                   'long_name': 'Movie format'},
        'stars': {'type': 'text', 'default': '', 'max_length': 200, 'long_name': 'Comparison stars (one per line)'},
        'steps': {'type': 'int', 'default': 0, 'min': 0, 'max': 1000, 'long_name': 'Steps to count through'},
        'step_seconds': {'type': 'float', 'default': 0.0, 'min': 0, 'max': 5, 'long_name': 'Seconds per step'},
    }

    class Meta:
        proxy = True
        app_label = 'tests'

    def do_pipeline(self, tmpdir, **params):
        for step in range(params['steps']):
            time.sleep(params['step_seconds'])
            self.progress(step + 1, params['steps'], f'step {step + 1}')
            if params['verbose']:
                self.log(f'step {step + 1}')
        received = tmpdir / 'received.json'
        received.write_text(json.dumps(params, sort_keys=True))
        return [(received, ReducedDatum, 'received')]
