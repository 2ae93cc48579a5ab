"""The engine: processes, pipelines, jobs, stopping, capture and Results.

Plain asyncio and POSIX: nothing here imports IPython or :mod:`asyncmagic.display`
(a test walks every module to hold that), so it works in any asyncio program.
"""
