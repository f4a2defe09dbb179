"""The A1111 backend (v1.10.1, older versions, Forge, SD.Next): session, wait, preflight,
translation, worker with retries and OOM split, response decoding, post-check.
Entry point: `connect.BACKEND.connect(job, ...)`.
"""
