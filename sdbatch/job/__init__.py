"""Stage 1, the job: read a YAML job file, check it against schemas/job.schema.json and the rules
the schema cannot say, and return a frozen `Job`. Entry point: `job.loader.load_job(path)`.
"""
