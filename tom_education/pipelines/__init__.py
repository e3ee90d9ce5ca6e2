"""Science pipelines that ship with tom_education.

They are written only with the public API of ``docs/pipelines.rst`` so that they double as its
largest examples. Register the ones a TOM wants in ``TOM_EDUCATION_PIPELINES``::

    TOM_EDUCATION_PIPELINES = {
        'Timelapse': 'tom_education.pipelines.timelapse.TimelapsePipeline',
        'Light curve (aperture photometry)': 'tom_education.pipelines.photometry.AperturePhotometryPipeline',
        'Period search': 'tom_education.pipelines.periods.pipeline.PeriodSearchPipeline',
    }

The modules are imported only when a pipeline is registered, so their heavier dependencies
(photutils, matplotlib, imageio, scipy) load on the worker that runs them, not in every web request.
"""
