"""Reliability and security evidence for issue 10, written as figures to `reliability/results/`.

* `reliability.simulation` — a seeded, TigerBeetle-VOPR-style simulation of the ledger against DynamoDB
  Local, with injected faults and a checker (`python -m reliability.simulation --seeds 1,2,3`);
  writes `results/simulation.json`.
* `reliability.fuzz` — property-based fuzzing of every HTTP input and queue message; writes
  `results/fuzz.json`.
* the attack suite — writes `results/attacks.json`.
* `reliability.report` — merges the three into `results/latest.json` and writes `RELIABILITY.md`
  (`python -m reliability.report`).
"""
