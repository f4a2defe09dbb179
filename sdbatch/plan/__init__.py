"""Stage 2, the plan: expand a Job (prompts x grid x zip x seeds, minus exclude) lazily into
planned txt2img payloads. Entry point: `plan.expand.build_plan(job)`.
"""
