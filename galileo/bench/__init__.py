"""``galileo bench``: benchmarks of the farm against ``galileo sim`` on loopback addresses.

Scenarios live in their own modules (:mod:`galileo.bench.ratelimit`, :mod:`galileo.bench.farm`,
:mod:`galileo.bench.blind`, :mod:`galileo.bench.sim`); :mod:`galileo.bench.report` runs them and
builds the JSON report.
"""
