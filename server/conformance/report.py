"""cactus-client's run output as per-procedure results, and the tables `make conformance` writes.

`cactus run` leaves, per run, a folder `run NNN - <procedure>` under its output_dir with `.result`
(PASS or FAIL), `report.html`, `cactus.log` and `requests/NNN-<client>-<METHOD>-<path>.request|
.response`. Its console panel (stdout) lists every step with "Success", "Failed" or "Not
Executed" and each attempt's "Passed", "Check Failure: …" or "Exception: …". `read_run` turns that
into a `Result`: the verdict, the step that failed and why, and the last request/response exchanged
before the failure.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SECTION_START = "## CSIP-AUS conformance harness (cactus-client)"


@dataclass
class Result:
    procedure: str
    description: str
    status: str  # PASS, FAIL, TIMEOUT, CAPPED (a long procedure stopped at its cap), ERROR, SKIPPED
    seconds: float = 0.0
    failed_step: str | None = None
    reason: str | None = None
    exchange: list[str] = field(default_factory=list)  # the last request and response, a few lines each
    run_dir: str | None = None
    admin: list[str] = field(default_factory=list)  # what the plugin did (its log)
    commit: str = ""  # the derflex commit it ran on, when a table merges several runs

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


def _cells(line: str) -> list[str]:
    """The cells of one row of a table inside rich's panel (the panel's border dropped); a title
    row gives one cell, a border row gives none."""
    text = line.strip()
    if len(text) >= 2 and text[0] in "│┃" and text[-1] in "│┃":
        text = text[1:-1].strip()  # the panel around everything
    if not text or text[0] in "┌├└╭╰─━":
        return []
    if len(text) >= 2 and text[0] in "│┃" and text[-1] in "│┃":
        return [c.strip() for c in re.split(r"[│┃]", text[1:-1])]
    return [text]


def steps_from_console(console: str, step_ids: Sequence[str]) -> tuple[str | None, str | None]:
    """(the failed or first not-executed step, the reason shown for its last attempt) from the
    console panel's "Steps" table; rich wraps long cells, so continuation rows are joined."""
    known = set(step_ids)
    in_steps = False
    current: str | None = None
    status: dict[str, str] = {}
    attempts: dict[str, list[str]] = {}
    for line in console.splitlines():
        cells = _cells(line)
        if not cells:
            continue
        if len(cells) == 1 and not in_steps:
            in_steps = cells[0] == "Steps"
            continue
        if not in_steps:
            continue
        if len(cells) == 1 and cells[0] not in known:
            break  # the next table (Requests, Exceptions)
        if len(cells) < 2:
            continue
        first, second = cells[0], " ".join(cells[1:]).strip()
        if first in known:
            current = first
            status[first] = second
            attempts.setdefault(first, [])
        elif current is not None and re.fullmatch(r"\+[0-9][0-9.hms]*", first):
            attempts[current].append(second)
        elif current is not None and not first and second and attempts.get(current):
            attempts[current][-1] += " " + second
    for step in step_ids:
        if status.get(step, "").startswith("Failed"):
            tries = attempts.get(step) or []
            return step, (tries[-1] if tries else None)
    for step in step_ids:
        if status.get(step) == "Not Executed":
            return step, "not executed"
    return None, None


def last_exchange(run_dir: Path, max_lines: int = 14) -> list[str]:
    """The last request and its response the harness recorded (first lines of each)."""
    folder = run_dir / "requests"
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.suffix in (".request", ".response"))
    if not files:
        return []
    prefix = files[-1].name.split("-", 1)[0]
    lines: list[str] = []
    for path in sorted(p for p in files if p.name.startswith(prefix + "-")):
        text = [ln for ln in path.read_text(errors="replace").splitlines() if not ln.startswith("# ")]
        lines.append(f"--- {path.name}")
        lines.extend(ln[:200] for ln in text[:max_lines])
    return lines


def read_run(
    procedure: str,
    description: str,
    run_dir: Path | None,
    console: str,
    step_ids: Sequence[str],
    seconds: float,
    *,
    timed_out: bool = False,
    capped: bool = False,
) -> Result:
    """The Result of one `cactus run` from its run folder and console output."""
    result = Result(procedure, description, "ERROR", seconds=seconds, run_dir=str(run_dir) if run_dir else None)
    verdict = (run_dir / ".result").read_text().strip() if run_dir and (run_dir / ".result").exists() else None
    if verdict == "PASS":
        result.status = "PASS"
        return result
    result.failed_step, result.reason = steps_from_console(console, step_ids)
    if timed_out or "timed out after" in console:
        result.status = "CAPPED" if capped else "TIMEOUT"
        if result.reason in (None, "not executed"):
            result.reason = "the harness's time limit ran out while this step was repeating"
    elif verdict == "FAIL":
        result.status = "FAIL"
    else:
        tail = [ln for ln in console.strip().splitlines() if ln.strip()][-3:]
        result.reason = result.reason or " ".join(tail)[:500] or "cactus produced no result"
    if run_dir is not None:
        result.exchange = last_exchange(run_dir)
        said = [ln.split(":", 1)[1].strip() for ln in result.exchange if ln.lower().startswith("x-error-detail:")]
        if said and result.reason and "Received status" in result.reason and said[-1] not in result.reason:
            result.reason += f" (derflex: {said[-1]})"
    return result


def _one_line(text: str | None, limit: int = 220) -> str:
    if not text:
        return ""
    text = re.sub(r"\s+", " ", text).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_table(results: Sequence[Result]) -> list[str]:
    """The results as a markdown table; with a "ran on" column when any row names its commit."""
    with_commit = any(r.commit for r in results)
    lines = (
        ["| procedure | result | ran on | s | failed step | why |", "| --- | --- | --- | ---: | --- | --- |"]
        if with_commit
        else ["| procedure | result | s | failed step | why |", "| --- | --- | ---: | --- | --- |"]
    )
    for r in results:
        ran_on = f" {_one_line(r.commit, 80)} |" if with_commit else ""
        lines.append(
            f"| {r.procedure} | {r.status} |{ran_on} {r.seconds:.0f} | {_one_line(r.failed_step, 60)} | "
            f"{_one_line(r.reason)} |"
        )
    return lines


EARLIER = "not re-run"


def merge_runs(runs: Sequence[dict]) -> list[Result]:
    """One table from several saved runs (results.json contents, oldest first): each procedure's
    row from the newest run that has it, naming the commit it ran on; rows only the first run has
    are marked as not re-run."""
    rows: dict[str, Result] = {}
    for i, saved in enumerate(runs):
        commit = str(saved.get("commit") or "unknown")
        for old in saved["results"]:
            result = Result(**{**old, "commit": commit})
            if i == 0 and len(runs) > 1:
                result.commit = f"{commit} ({EARLIER})"
            rows[result.procedure] = result
    return [rows[pid] for pid in sorted(rows, key=_procedure_order)]


def _procedure_order(pid: str) -> tuple[str, int]:
    kind, _, number = pid.rpartition("-")
    return kind, int(number) if number.isdigit() else 0


def counts(results: Sequence[Result]) -> str:
    by: dict[str, int] = {}
    for r in results:
        by[r.status] = by.get(r.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(by.items(), key=lambda kv: (-kv[1], kv[0])))


def procedure_report(r: Result) -> str:
    """One procedure's report (markdown), written beside its run folder."""
    lines = [f"# {r.procedure}: {r.description}", "", f"**{r.status}** in {r.seconds:.0f} s", ""]
    if r.failed_step:
        lines += [f"Failed step: `{r.failed_step}`", "", f"Why: {r.reason or '(no reason shown)'}", ""]
    if r.admin:
        lines += ["## What the admin plugin did", "", "```", *r.admin, "```", ""]
    if r.exchange:
        lines += ["## Last request and response", "", "```", *r.exchange, "```", ""]
    if r.run_dir:
        lines += [f"cactus-client's own report: `{r.run_dir}/report.html`", ""]
    return "\n".join(lines)


def interop_section(
    results: Sequence[Result], versions: dict[str, str], *, commit: str, notes: Sequence[str] = ()
) -> str:
    """The docs/interop.md section: how to run it, versions, the table."""
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    passed = sum(r.passed for r in results)
    lines = [
        SECTION_START,
        "",
        "`make conformance` runs the public CSIP-AUS server test procedures of "
        f"[cactus-client](https://pypi.org/project/cactus-client/) {versions.get('cactus-client', '?')} "
        f"(test definitions cactus-test-definitions {versions.get('cactus-test-definitions', '?')}) against a "
        "fresh `derflex serve` per procedure; `make conformance PROCEDURES=S-ALL-01,S-ALL-02` runs some. "
        "It builds `.venv-conformance/` (Python 3.12) with `derflex[conformance]` — cactus-client and "
        "derflex's admin plugin (`server/conformance/`, entry point `cactus_client.admin`) — and "
        "cactus-client-notifications, the harness's webhook service, served on 127.0.0.1 over TLS. "
        "Clients: two device certificates and one aggregator certificate from the dev PKI. "
        "Per-procedure reports (failed step, why, the last request/response, what the plugin did) are "
        "in `conformance-results/<run>/`; `python -m server.conformance.driver --help` explains the options.",
        "",
        (f"Table of {day}, merged from several runs (each row names the derflex commit it ran on): "
         if any(r.commit for r in results) else f"Last full table: {day}, derflex at `{commit}`: ")
        + f"**{passed} of {len(results)} pass** ({counts(results)}).",
        "",
        *[line for note in notes for line in (note, "")],
        *summary_table(results),
        "",
    ]
    return "\n".join(lines)


def replace_section(document: str, section: str) -> str:
    """`document` with its conformance section replaced by `section` (appended if absent). The
    section runs from its heading to the next heading of the same level."""
    start = document.find(SECTION_START)
    if start < 0:
        return document.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    nxt = re.search(r"^## ", document[start + len(SECTION_START):], flags=re.M)
    end = len(document) if nxt is None else start + len(SECTION_START) + nxt.start()
    tail = document[end:]
    return document[:start] + section.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
