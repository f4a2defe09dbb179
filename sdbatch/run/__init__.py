"""Stage 3, the run: claim the output dir, hand payloads to the backend's workers, the answers
to the writer, and draw the pictures at the end. Entry point: `run.runner.run_job(...)`.
"""
