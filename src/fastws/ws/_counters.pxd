# Plain C counters of one runtime (hub): the hot path bumps them with a C
# increment; whoever reports them (app.skipped, metrics) reads them when asked.

cdef class Counters:
    cdef public long long skipped        # sends/broadcasts not delivered: over max_backpressure ("skip")
    cdef public long long dropped        # client messages discarded by the rate limit ("drop")
    cdef public long long slow_consumers # members dropped from a flow-control wait
