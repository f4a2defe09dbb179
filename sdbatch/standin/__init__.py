"""The stand-in servers the tests and the demo run against, held to transcripts of the real
ones. Not a stage: no stage imports them (only `sdbatch mock` in the cli starts one).
"""
