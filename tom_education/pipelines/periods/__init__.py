"""Period search on a target's light curve: generalised Lomb-Scargle with errors.

The science is split into Django-free modules, one job each, so every step can be tested on
arrays alone:

- :mod:`.table` reads a light-curve CSV (the photometry pipeline's, or any with time, magnitude
  and error columns) into :class:`.series.Observations`;
- :mod:`.series` picks one band and the best time scale, and drops what cannot be searched
  (upper limits, points without errors, duplicates);
- :mod:`.grid` chooses the frequency grid from the data's span and sampling;
- :mod:`.periodogram` evaluates the periodogram in chunks (so a long search reports progress),
  finds its peaks and the false-alarm probability;
- :mod:`.refine` refines the best frequency and derives its uncertainty from the curvature of
  the chi-square at the peak;
- :mod:`.harmonics` decides between the peak's period, twice it (eclipsing binaries) and its
  sub-multiples (multi-term models);
- :mod:`.search` runs these steps in order and returns the result;
- :mod:`.plots` draws the periodogram and the phase-folded light curve.

:mod:`.pipeline` holds the thin ``PeriodSearchPipeline`` class that reads the inputs, calls
:func:`.search.search_period`, logs and returns the outputs. It is the only module that imports
Django, so this package's ``__init__`` does not import it; it imports the search (scipy, astropy's
periodograms) only when a run starts, so registering the pipeline costs a web process nothing.
"""


class PeriodSearchError(ValueError):
    """The data cannot constrain a period, or an input is unusable; the message says what to do."""
