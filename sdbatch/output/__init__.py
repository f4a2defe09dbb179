"""Stage 5, the output: images saved atomically, the manifest, resume of an earlier run.
Entry point: `output.writer.Writer.write(outcome)`; `output.resume.open_output` for resume.
"""
