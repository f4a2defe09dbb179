"""The ComfyUI backend (0.3.64): facts from /object_info, preflight, the built-in text-to-image
graph, a worker that posts with its own client_id and collects from /history and /view,
response decoding and the post-check. Entry point: `connect.BACKEND.connect(job, ...)`.
"""
