"""Offline diagnostics of finished runs (files and checkpoints in, tables and plots out).

`probe` (teacher-forced log p of misaligned vs aligned held-out segments), `violations` (which
PEP8 codes make up a score), `report` (the paper's figures and tables, with `red_team_report` and
`downstream_report` for their panels), `figures` (PNG and text files published atomically).
Their command lines are in `harness.cli.analysis`.
"""
