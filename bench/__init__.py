"""pynatsd benchmark: raw-socket load against pynatsd and the real nats-server, side by side.

Run with ``python -m bench`` (``make bench``); ``python -m bench --help`` lists the options.
Modules: ``load`` (generator processes), ``servers`` (fresh servers, CPU and RSS probes),
``certs`` (throwaway TLS material), ``sink`` (the generator's self-check peer),
``scenarios`` (what each scenario measures), ``report`` (medians, ratios, the table),
``profiling`` (pynatsd under a profiler).
"""
