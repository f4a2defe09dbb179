"""Stage 4, the servers: `base` is the seam (what the run loop asks of a server kind),
`registry.backend_for(job)` picks the kind by `server.type`, `a1111/` is the first kind.
"""
