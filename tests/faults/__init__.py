"""The fault matrix (issue 7): what nctui survives with nothing lost, one module a row.

| row | module |
|---|---|
| SIGKILL at 10 moments, snapshot writes included: every run opens, no torn snapshot, resume continues | test_kill |
| SIGINT / SIGTERM, headless and in the TUI: final snapshot, end `stopped`, exit 130 / 143 | test_signals |
| divergence: end `diverged`, exit 3, the last finite snapshot kept, the TUI says why | test_divergence |
| 30+ malformed configs: one line naming the problem, exit 2 | test_bad_configs |
| hostile files for `open` and `--resume`: rejected with a message, the TUI stays up | test_hostile_files |
| disk trouble: unwritable run directory, disk full mid-run: clear error, snapshots intact | test_disk |
| data trouble: missing offline, wrong checksum, truncated IDX: exit 2 with what to do | test_data |
| the TUI at 20x10, a resize storm, a flood of records: no crash, no stalled training | test_tui |
"""
