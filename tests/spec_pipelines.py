"""The examples of docs/pipelines.rst, word for word where the docs give code.

Where the docs elide code with ``...``, the smallest body that lets a test observe the documented
behaviour is filled in (marked ``# filled in``). The module lies outside INSTALLED_APPS, as the
docs' ``app_label`` comment describes.
"""
import time

from tom_dataproducts.models import DataProduct, ReducedDatum

from tom_education.models import AsyncError, PipelineOutput, PipelineProcess


class ExamplePipelineProcess(PipelineProcess):
    # Label used as a prefix for names of generated data products
    short_name = 'example'

    # Optional list of suffixes for input files. The process will fail if
    # trying to run with files that do not end in one of these suffixes.
    allowed_suffixes = ['.fits', '.fz']

    # Make this a proxy: we do not want this to be a concrete model (which
    # would use a separate DB table and require migrations)
    class Meta:
        proxy = True
        # app label is required if this class is defined outside of an app
        # listed in INSTALLED_APPS
        app_label = 'myapp'

    def do_pipeline(self, tmpdir):
        """
        This method does the actual work. ``tmpdir`` is ``pathlib.Path``
        object for a temporary directory which can be used to write
        outputs and other temporary files.

        This method will return a sequence of PipelineOutput objects (or
        tuples) for the output files that should be saved in the TOM.
        """
        # The ``Target`` object is available as ``self.target``
        ra = self.target.ra
        dec = self.target.dec

        # The input files are available as ``self.input_files``. This is a Django
        # ``ManyRelatedManager`` object of ``DataProduct`` objects: use
        # ``self.input_files.all()`` to get the inputs as a list.
        for product in self.input_files.all():
            path = product.data.path
            # Do something with file...
            self.log(f'input {path} ({path.__class__.__name__}) at ra={ra} dec={dec}')  # filled in

        # Create some output files
        outcsv = tmpdir / 'my_output.csv'
        outcsv.write_text('data here')
        outpng = tmpdir / 'anther_output.png'
        outpng.write_bytes(b'PNG data here')

        return [
            PipelineOutput(path=outcsv, output_type=ReducedDatum),
            (outpng, DataProduct)  # Can output a tuple instead of PipelineOutput
        ]


class FlagDemo(PipelineProcess):
    # ``flags`` is a dictionary that maps flag names to their default values and
    # long descriptions
    flags = {
        'some_flag': {'default': True, 'long_name': 'Long name to be displayed in the UI'},
        'another_flag': {'default': False, 'long_name': 'Another flag'}
    }

    class Meta:  # filled in: the docs' "..." (a proxy, as in the first example)
        proxy = True
        app_label = 'myapp'

    def do_pipeline(self, tmpdir, **flags):
        some_flag = flags.pop('some_flag')
        another_flag = flags.pop('another_flag')
        self.log(f'some_flag={some_flag} another_flag={another_flag} rest={flags}')  # filled in
        return []  # filled in


class MyPipeline(PipelineProcess):
    class Meta:  # filled in
        proxy = True
        app_label = 'myapp'

    def do_pipeline(self, tmpdir):
        raise AsyncError('Something went terribly wrong')


class StatusExample(PipelineProcess):
    """The "Status updates" example; each step lasts long enough for a poller to see its status."""

    class Meta:  # filled in
        proxy = True
        app_label = 'myapp'

    def do_pipeline(self, tmpdir):
        with self.update_status('Doing the first thing'):
            # do something
            time.sleep(1.5)  # filled in

        with self.update_status('Done that - now doing the second thing'):
            # do something else
            time.sleep(1.5)  # filled in
        return []  # filled in


class LogExample(PipelineProcess):
    class Meta:  # filled in
        proxy = True
        app_label = 'myapp'

    def do_pipeline(self, tmpdir):
        with self.update_status('Doing something important'):
            self.log('first sub-step')
            self.log('second sub-step')
        return []  # filled in
