"""The hostile user's reliability probe, as a script: 180 cases of bad input, faults and security checks run
against the `flowsteer` command with tiny settings, each judged automatically.

A case is acceptable when the command gives correct behaviour, or one clear `flowsteer: error:` line (exit code 2,
no traceback), and nothing already saved is lost or altered; each case's judge checks what that means for it (the
steps in eval.csv, the cells of a report, which files hold a password, which addresses Ray listens on...). Cases
run in order in one scratch directory with its own HOME, as a user would meet them: later cases use what earlier
ones left (the dataset of 4.12, the run of 3.00).

    .venv/bin/python benchmarks/reliability_probe.py                       # every case (about 30-40 minutes)
    .venv/bin/python benchmarks/reliability_probe.py --only 1.09,3.02      # some cases (and what they need)
    .venv/bin/python benchmarks/reliability_probe.py --pythonpath /tmp/old # another checkout's flowsteer

``--pythonpath`` runs the flowsteer of another checkout (a clone of an older commit) with this environment, for a
count before a change. "Read-only" directories are made immutable (chattr +i), which binds root too, and restored
at the end; without chattr those cases are skipped. Results: one line per case, the counts, and a Markdown
table (--markdown FILE).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASK = "cube-single-play-singletask-task2-v0"
TINY = ["--algo", "fql", "--task", TASK, "--offline-steps", "600", "--eval-interval", "200", "--eval-episodes", "2",
        "--episodes", "5", "--hp", "actor_hidden_dims=[64,64]", "--hp", "value_hidden_dims=[64,64]"]  # fmt: skip
BC = ["--algo", "bc", "--task", TASK, "--offline-steps", "600", "--eval-interval", "200", "--eval-episodes", "2",
      "--episodes", "5", "--hp", "actor_hidden_dims=[64,64]"]  # fmt: skip
KILL2 = [*TINY, "--checkpoint-interval", "200"]
PASSWORD, ENV_PASSWORD = "S3cretPW", "EnvPassXyz987"


@dataclass
class Result:
    args: list[str]
    rc: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Verdict:
    case: str
    title: str
    ok: bool
    why: str
    seconds: float = 0.0


@dataclass
class Case:
    id: str
    title: str
    run: Callable[[Probe], tuple[bool, str]]
    needs: list[str] = field(default_factory=list)


CASES: list[Case] = []


def case(id: str, title: str, needs: str = "") -> Callable:
    def register(function: Callable[[Probe], tuple[bool, str]]) -> Callable:
        CASES.append(Case(id, title, function, [n for n in needs.split(",") if n]))
        return function

    return register


# ---------------------------------------------------------------------------------------------- the probe


class Probe:
    """A scratch directory with its own HOME, and the flowsteer command run inside it."""

    def __init__(self, root: Path, pythonpath: str | None) -> None:
        self.root = root
        self.home = root / "home"
        self.work = root / "work"
        self.home.mkdir(parents=True)
        self.work.mkdir()
        self.pythonpath = pythonpath
        self.immutable: list[Path] = []
        self.results: dict[str, Result] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FLOWSTEER_", "RAY_"))}
        env |= {"HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env | extra

    def fs(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None, memory_gb: float | None = None,
           stdin: str | None = None) -> Result:  # fmt: skip
        command = [sys.executable, "-m", "flowsteer", *args]
        limit = None
        if memory_gb:
            size = int(memory_gb * 2**30)
            limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (size, size))  # noqa: E731
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=self.work,
            env=env or self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=timeout)
            rc = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            rc = 124
        return Result(list(args), rc, out, err, time.monotonic() - started)

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "flowsteer", *args],
            cwd=self.work,
            env=env or self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def kill_when(self, process: subprocess.Popen, pattern: str, delay: float, timeout: float = 300) -> bool:
        """SIGKILL ``process`` ``delay`` seconds after a file matching ``pattern`` (a glob under work) appears."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if list(self.work.glob(pattern)):
                time.sleep(delay)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return False

    def path(self, relative: str) -> Path:
        return self.work / relative

    def write(self, relative: str, text: str | bytes) -> Path:
        path = self.work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def make_immutable(self, path: Path) -> bool:
        """Make ``path`` (a directory tree) read-only for every user, root included."""
        done = subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True).returncode == 0
        if done:
            self.immutable.append(path)
        return done

    def restore(self) -> None:
        for path in self.immutable:
            subprocess.run(["chattr", "-R", "-i", str(path)], capture_output=True)


def run_dir(probe: Probe, output: str) -> Path | None:
    dirs = sorted(p for p in probe.path(output).glob("*") if (p / "config.json").exists())
    return dirs[0] if dirs else None


def eval_steps(path: Path | None) -> list[int]:
    if path is None or not (path / "eval.csv").exists():
        return []
    lines = (path / "eval.csv").read_text(errors="replace").splitlines()[1:]
    return [int(float(line.split(",")[0])) for line in lines if line and line.split(",")[0][:1].isdigit()]


def train_steps(path: Path | None) -> list[int]:
    if path is None or not (path / "train.csv").exists():
        return []
    lines = (path / "train.csv").read_text(errors="replace").splitlines()[1:]
    return [int(float(line.split(",")[0])) for line in lines if line and line.split(",")[0][:1].isdigit()]


def measurements(path: Path) -> str:
    """A log without a wall-time column (if it has one): what an interrupted and a whole run must share."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name != "wall_time"]
    return "\n".join(",".join(line.split(",")[i] for i in keep) for line in lines)


def one_error(result: Result, *texts: str, rc: int = 2) -> tuple[bool, str]:
    """One clear error: exit code ``rc``, a 'flowsteer...error:' line, no traceback, each of ``texts`` in it."""
    if "Traceback" in result.err:
        return False, f"traceback: {last_line(result.err)}"
    if result.rc != rc:
        return False, f"exit code {result.rc} (want {rc}): {last_line(result.text)}"
    if not re.search(r"^flowsteer( \w+)?: error: ", result.err, re.MULTILINE):
        return False, f"no 'flowsteer: error:' line: {last_line(result.text)}"
    missing = [t for t in texts if t not in result.err]
    if missing:
        return False, f"error lacks {missing}: {last_line(result.err)}"
    return True, last_line(result.err)


def succeeded(result: Result, *texts: str) -> tuple[bool, str]:
    if result.rc != 0 or "Traceback" in result.err:
        return False, f"exit code {result.rc}: {last_line(result.text)}"
    missing = [t for t in texts if t not in result.text]
    return (not missing, f"output lacks {missing}" if missing else last_line(result.out) or "ok")


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def both(*checks: tuple[bool, str]) -> tuple[bool, str]:
    """All of ``checks`` hold; the first failure's note, or the first check's note."""
    for ok, why in checks:
        if not ok:
            return False, why
    return True, checks[0][1]


# ---------------------------------------------------------------------------------------------- help, 1.xx


@case("help", "help")
def _(p: Probe):
    return succeeded(p.fs("--help"), "train", "sweep", "report")


@case("help_train", "train help")
def _(p: Probe):
    return succeeded(p.fs("train", "--help"), "--resume")


def _bad_train(args: list[str], *texts: str) -> Callable[[Probe], tuple[bool, str]]:
    return lambda p: one_error(p.fs("train", *args), *texts)


T100 = ["--task", TASK, "--offline-steps", "100"]
for _id, _title, _args, _texts in [
    ("1.01", "unknown algo", ["--algo", "fqll", *T100], ["fqll"]),
    ("1.02", "unknown task", ["--algo", "fql", "--task", "cube-singel-play-singletask-task2-v0"], ["Unknown task"]),
    ("1.03", "task number out of range", ["--algo", "fql", "--task", "cube-single-play-singletask-task9-v0"], ["9"]),
    ("1.04", "negative steps", ["--algo", "fql", "--task", TASK, "--offline-steps", "-5"], ["offline_steps"]),
    ("1.05", "zero steps", ["--algo", "fql", "--task", TASK, "--offline-steps", "0"], ["nothing"]),
    ("1.06", "non-int steps", ["--algo", "fql", "--task", TASK, "--offline-steps", "1e3"], ["--offline-steps"]),
    ("1.07", "hp unknown name", ["--algo", "fql", *T100, "--hp", "alpah=3"], ["alpah"]),
    ("1.08", "hp wrong type", ["--algo", "fql", *T100, "--hp", "alpha=abc"], ["alpha"]),
    ("1.09", "hp malformed list", ["--algo", "fql", *T100, "--hp", "actor_hidden_dims=[64,"], ["actor_hidden_dims"]),
    ("1.10", "hp no equals", ["--algo", "fql", *T100, "--hp", "alpha"], ["NAME=VALUE"]),
    ("1.11", "hp bool for float", ["--algo", "fql", *T100, "--hp", "alpha=true"], ["alpha"]),
    ("1.12", "hp q_agg invalid", ["--algo", "fql", *T100, "--hp", "q_agg=max"], ["q_agg"]),
    ("1.13", "missing --task", ["--algo", "fql", "--offline-steps", "100"], ["--task"]),
    ("1.14", "episodes bad", ["--algo", "fql", *T100, "--episodes", "tiny"], ["--episodes"]),
    ("1.15", "episodes 0", ["--algo", "fql", *T100, "--episodes", "0"], ["episodes"]),
    ("1.16", "eval interval 0", ["--algo", "fql", *T100, "--eval-interval", "0"], ["eval_interval"]),
    ("1.17", "source bogus", ["--algo", "fql", *T100, "--source", "web"], ["--source"]),
]:
    case(_id, _title)(_bad_train(_args, *_texts))

CONFIGS = {
    "1.20": ("config unknown field", "cfg_wrongfield.yaml", f"algo: fql\ntask: {TASK}\nofflin_steps: 100\n", "offlin"),
    "1.21": ("config wrong type", "cfg_wrongtype.yaml", f"algo: fql\ntask: {TASK}\noffline_steps: '100'\n", "offline"),
    "1.22": ("config non-utf8", "cfg_nonutf8.yaml", b"\xff\xfealgo: fql\n", "UTF-8"),
    "1.23": ("config empty", "cfg_empty.yaml", "", "mapping"),
    "1.24": ("config unknown data field", "cfg_datafield.yaml", f"algo: fql\ntask: {TASK}\ndata: {{cache: x}}\n",
             "cache"),
    "1.25": ("config hyperparameters list", "cfg_hplist.yaml", f"algo: fql\ntask: {TASK}\nhyperparameters: [1, 2]\n",
             "hyperparameters"),
    "1.26": ("config top-level list", "cfg_list.yaml", "- algo\n- fql\n", "mapping"),
    "1.27": ("config data scalar", "cfg_data5.yaml", f"algo: fql\ntask: {TASK}\ndata: 5\n", "data"),
    "1.28": ("config task is list", "cfg_tasklist.yaml", f"algo: fql\ntask: [{TASK}]\n", "task"),
}  # fmt: skip
for _id, (_title, _name, _content, _text) in CONFIGS.items():

    def _config(p: Probe, name=_name, content=_content, text=_text):
        p.write(name, content)
        return one_error(p.fs("train", "--config", name), text)

    case(_id, _title)(_config)


@case("1.29", "config missing")
def _(p: Probe):
    return one_error(p.fs("train", "--config", "nope.yaml"), "nope.yaml")


@case("1.30", "config is dir")
def _(p: Probe):
    p.path("scratch").mkdir(exist_ok=True)
    return one_error(p.fs("train", "--config", "./scratch"), "scratch")


# ---------------------------------------------------------------------------------------------- data 4.0x-4.1x


@case("4.01", "generate locomotion")
def _(p: Probe):
    return one_error(p.fs("data", "generate", "antmaze-large-navigate-v0", "--episodes", "5"), "official files")


@case("4.02", "generate unknown")
def _(p: Probe):
    return one_error(p.fs("data", "generate", "cube-single-pley", "--episodes", "5"), "cube-single-pley")


@case("4.03", "generate workers 0")
def _(p: Probe):
    return one_error(p.fs("data", "generate", "cube-single-play", "--episodes", "5", "--workers", "0"), "--workers")


@case("4.04", "generate episodes -1")
def _(p: Probe):
    return one_error(p.fs("data", "generate", "cube-single-play", "--episodes", "-1"), "--episodes")


@case("4.05", "generate cache-dir unwritable")
def _(p: Probe):
    return one_error(p.fs("data", "generate", "cube-single-play", "--episodes", "5", "--cache-dir", "/proc/nope"),
                     "--cache-dir")  # fmt: skip


@case("4.06", "generate episode-steps 1")
def _(p: Probe):
    args = ["data", "generate", "cube-single-play", "--episodes", "5", "--episode-steps", "1", "--cache-dir", "c1"]
    return one_error(p.fs(*args), "--episode-steps")


@case("4.10", "interrupted generate (SIGKILL at 12 s)")
def _(p: Probe):
    result = p.fs("data", "generate", "cube-single-play", "--episodes", "5", "--quiet", timeout=12)
    copies = list((p.home / ".cache/flowsteer/ogbench").glob("cube-single-play__*"))
    return (result.rc == 124 and not copies, f"killed; complete-looking copies left: {copies}")


@case("4.11", "data list after interrupted generate", needs="4.10")
def _(p: Probe):
    result = p.fs("data", "list")
    listed = [line for line in result.out.splitlines() if line.startswith("cube-single-play-v0")]
    return (result.rc == 0 and not listed, f"listed: {listed}" if listed else last_line(result.out))


@case("4.12", "generate after interrupted one", needs="4.10")
def _(p: Probe):
    return succeeded(p.fs("data", "generate", "cube-single-play", "--episodes", "5", "--quiet"), "5,000 training")


# ---------------------------------------------------------------------------------------------- runs 3.00, 1.4x


@case("3.00", "baseline tiny fql run", needs="4.12")
def _(p: Probe):
    result = p.fs("train", *TINY, "--output-dir", "runs_base", "--quiet")
    return both(succeeded(result, "finished at step 600"), (eval_steps(run_dir(p, "runs_base")) == [200, 400, 600],
                                                            "eval steps 200, 400, 600"))  # fmt: skip


@case("1.40", "huge steps 1e30 (memory limited, 60 s)", needs="4.12")
def _(p: Probe):
    args = [a if a != "600" else "1" + "0" * 30 for a in TINY]
    return one_error(p.fs("train", *args, "--output-dir", "runs_huge", "--quiet", timeout=60, memory_gb=8),
                     "offline_steps")  # fmt: skip


@case("1.41", "huge seed 1e23", needs="4.12")
def _(p: Probe):
    result = p.fs("train", *BC, "--quiet", "--seed", "99999999999999999999999", "--output-dir", "runs_seed")
    return one_error(result, "seed")


for _id, _title, _hp, _text in [
    ("1.42", "hp batch_size=0", ["--hp", "batch_size=0"], "batch_size"),
    ("1.43", "hp actor_hidden_dims=[a,b]", ["--hp", "actor_hidden_dims=[a,b]"], "actor_hidden_dims"),
    ("1.44", "hp actor_hidden_dims=[-64]", ["--hp", "actor_hidden_dims=[-64]"], "actor_hidden_dims"),
]:

    def _bad_hp(p: Probe, hp=_hp, text=_text):
        result = p.fs("train", *BC, "--quiet", "--output-dir", "runs_hp", *hp)
        states = [json.loads((d / "status.json").read_text())["state"] for d in p.path("runs_hp").glob("*/")
                  if (d / "status.json").exists()]  # fmt: skip
        return both(one_error(result, text), ("running" not in states, f"status left: {states}"))

    case(_id, _title, needs="4.12")(_bad_hp)


# ---------------------------------------------------------------------------------------------- kill, resume 3.0x


@case("3.01", "kill -9 at 40 s (default checkpoint interval)", needs="4.12")
def _(p: Probe):
    process = p.start("train", *TINY, "--quiet", "--output-dir", "runs_kill")
    deadline = time.monotonic() + 300  # after the second evaluation, before any checkpoint (default interval)
    while process.poll() is None and time.monotonic() < deadline and len(eval_steps(run_dir(p, "runs_kill"))) < 2:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    steps = eval_steps(run_dir(p, "runs_kill"))
    return (len(steps) == 2, f"eval rows at the kill: {steps}")


@case("3.02", "rerun after kill (no checkpoint), without --resume", needs="3.01")
def _(p: Probe):
    result = p.fs("train", *TINY, "--quiet", "--output-dir", "runs_kill")
    steps, train = eval_steps(run_dir(p, "runs_kill")), train_steps(run_dir(p, "runs_kill"))
    fine = steps == [200, 400, 600] and len(train) == len(set(train))
    return both(succeeded(result) if result.rc == 0 else one_error(result), (fine, f"eval steps {steps}"))


@case("3.03", "kill -9 0.7 s after the first checkpoint (checkpoint every 200)", needs="4.12")
def _(p: Probe):
    process = p.start("train", *KILL2, "--quiet", "--output-dir", "runs_kill2")
    killed = p.kill_when(process, "runs_kill2/*/checkpoints/LATEST", delay=0.7)
    return (killed, "killed after the first checkpoint" if killed else "finished before the kill")


@case("3.04", "rerun without --resume (checkpoint exists)", needs="3.03")
def _(p: Probe):
    return one_error(p.fs("train", *KILL2, "--quiet", "--output-dir", "runs_kill2"), "--resume")


@case("3.05", "rerun with --resume", needs="3.03,3.00")
def _(p: Probe):
    result = p.fs("train", *KILL2, "--quiet", "--output-dir", "runs_kill2", "--resume")
    same = measurements(run_dir(p, "runs_kill2") / "eval.csv") == measurements(run_dir(p, "runs_base") / "eval.csv")
    return both(succeeded(result, "finished at step 600"), (same, "eval.csv as the uninterrupted run's"))


def _killed_after_400(p: Probe) -> Path:
    """A real run of KILL2 SIGKILLed right after its checkpoint at step 400 (checkpoints 200 and 400 on disk)."""
    if run_dir(p, "runs_k400") is None:
        process = p.start("train", *KILL2, "--quiet", "--output-dir", "runs_k400")
        p.kill_when(process, "runs_k400/*/checkpoints/step_000000400/meta.json", delay=0.3)
    return run_dir(p, "runs_k400")


def _interrupted_copy(p: Probe, name: str) -> Path:
    """A copy, in output dir ``name``, of a run killed right after its checkpoint at step 400."""
    source = _killed_after_400(p)
    target = p.path(name) / source.name
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())  # the same run in its new folder, as the command
    config["run"]["output_dir"] = name  # names it (an older flowsteer compared this field too)
    (target / "config.json").write_text(json.dumps(config))
    return target


def _resume_damaged(p: Probe, name: str, damage: Callable[[Path], None]) -> tuple[bool, str]:
    target = _interrupted_copy(p, name)
    damage(target)
    result = p.fs("train", *KILL2, "--quiet", "--resume", "--output-dir", name)
    if result.rc == 0:
        same = measurements(target / "eval.csv") == measurements(run_dir(p, "runs_base") / "eval.csv")
        return both(succeeded(result), (same, "eval.csv as the uninterrupted run's"))
    return one_error(result)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@case("3.06", "resume, newest arrays.npz bytes overwritten", needs="3.05")
def _(p: Probe):
    return _resume_damaged(p, "runs_c1", lambda t: _flip(t / "checkpoints/step_000000400/arrays.npz"))


@case("3.07", "resume, newest arrays.npz truncated", needs="3.05")
def _(p: Probe):
    return _resume_damaged(p, "runs_c2", lambda t: os.truncate(t / "checkpoints/step_000000400/arrays.npz", 5000))


@case("3.08", "resume, newest meta.json truncated", needs="3.05")
def _(p: Probe):
    return _resume_damaged(p, "runs_c3", lambda t: os.truncate(t / "checkpoints/step_000000400/meta.json", 19))


@case("3.09", "LATEST deleted, rerun WITHOUT --resume", needs="3.05")
def _(p: Probe):
    target = _interrupted_copy(p, "runs_c4")
    (target / "checkpoints" / "LATEST").unlink()
    before = eval_steps(target)
    result = p.fs("train", *KILL2, "--quiet", "--output-dir", "runs_c4")
    steps = eval_steps(target)
    if result.rc == 0:
        return (steps == [200, 400, 600], f"restarted; eval steps {steps}")
    return both(one_error(result, "--resume"), (steps == before, f"eval steps changed: {before} -> {steps}"))


@case("3.10", "LATEST points to a missing step, --resume", needs="3.05")
def _(p: Probe):
    return _resume_damaged(p, "runs_c5", lambda t: (t / "checkpoints/LATEST").write_text("step_000000999"))


@case("3.11", "eval.csv cut below its checkpoint's offset, --resume", needs="3.05")
def _(p: Probe):
    target = _interrupted_copy(p, "runs_c6")
    os.truncate(target / "eval.csv", 50)
    result = p.fs("train", *KILL2, "--quiet", "--resume", "--output-dir", "runs_c6")
    untouched = (target / "eval.csv").stat().st_size == 50
    return both(one_error(result, "eval.csv"), (untouched, "eval.csv left as it was (no NUL padding)"))


@case("3.12", "status.json truncated, --resume", needs="3.05")
def _(p: Probe):
    return _resume_damaged(p, "runs_c8", lambda t: os.truncate(t / "status.json", 15))


@case("3.13", "config.json truncated, --resume", needs="3.05")
def _(p: Probe):
    target = _interrupted_copy(p, "runs_c9")
    os.truncate(target / "config.json", 8)
    return one_error(p.fs("train", *KILL2, "--quiet", "--resume", "--output-dir", "runs_c9"), "config.json")


@case("3.14", "LATEST empty file, --resume", needs="3.05")
def _(p: Probe):
    return _resume_damaged(p, "runs_c10", lambda t: (t / "checkpoints/LATEST").write_text(""))


@case("3.15", "same run, --output-dir with trailing slash", needs="3.05")
def _(p: Probe):
    return succeeded(p.fs("train", *KILL2, "--quiet", "--output-dir", "runs_kill2/"), "finished")


@case("3.16", "same run, --output-dir absolute", needs="3.05")
def _(p: Probe):
    return succeeded(p.fs("train", *KILL2, "--quiet", "--output-dir", str(p.path("runs_kill2"))), "finished")


@case("3.17", "same run, --eval-envs 5 (not in identity)", needs="3.05")
def _(p: Probe):
    return succeeded(p.fs("train", *KILL2, "--quiet", "--output-dir", "runs_kill2", "--eval-envs", "5"), "finished")


@case("3.18", "same run, --hp order swapped", needs="3.05")
def _(p: Probe):
    swapped = [*KILL2[:-6], "--hp", "value_hidden_dims=[64,64]", "--hp", "actor_hidden_dims=[64,64]", *KILL2[-2:]]
    return succeeded(p.fs("train", *swapped, "--quiet", "--output-dir", "runs_kill2"), "finished")


@case("3.19", "same run, exact same command (finished)", needs="3.05")
def _(p: Probe):
    return succeeded(p.fs("train", *KILL2, "--quiet", "--output-dir", "runs_kill2"), "finished")


# ---------------------------------------------------------------------------------------------- data 4.2x-4.4x


def _cache_copy(p: Probe, name: str, damage: Callable[[Path], None]) -> str:
    source = p.home / ".cache/flowsteer/ogbench/cube-single-play__generated-n5-s0"
    target = p.root / name / "ogbench" / source.name
    if not target.exists():
        shutil.copytree(source, target)
        damage(target)
    return str(p.root / name)


def _bad1(p: Probe) -> str:
    return _cache_copy(p, "cache_bad1", lambda t: _flip(t / "train.npz"))


def _bad2(p: Probe) -> str:
    return _cache_copy(p, "cache_bad2", lambda t: os.truncate(t / "train.npz", 300000))


def _bad3(p: Probe) -> str:
    return _cache_copy(p, "cache_bad3", lambda t: (t / "provenance.json").unlink())


@case("4.20", "data verify on cache with flipped bytes", needs="4.12")
def _(p: Probe):
    result = p.fs("data", "verify", "--cache-dir", _bad1(p))
    return (result.rc == 1 and "MISMATCH" in result.out, last_line(result.out))


def _reports_damage(result: Result, want_rc: int = 1) -> tuple[bool, str]:
    damaged = re.search(r"DAMAGED|UNUSABLE|corrupt|damaged", result.out + result.err)
    ok = bool(damaged) and result.rc == want_rc and "Traceback" not in result.err
    return ok, f"rc {result.rc}: {last_line(result.out + result.err)}"


@case("4.21", "data verify on cache with truncated npz", needs="4.12")
def _(p: Probe):
    return _reports_damage(p.fs("data", "verify", "--cache-dir", _bad2(p)))


@case("4.22", "data list on cache with truncated npz", needs="4.12")
def _(p: Probe):
    return _reports_damage(p.fs("data", "list", "--cache-dir", _bad2(p)), want_rc=0)


@case("4.23", "data verify on cache without provenance.json", needs="4.12")
def _(p: Probe):
    return _reports_damage(p.fs("data", "verify", "--cache-dir", _bad3(p)))


@case("4.24", "data verify cube-single-play by name, truncated", needs="4.12")
def _(p: Probe):
    return _reports_damage(p.fs("data", "verify", "cube-single-play", "--cache-dir", _bad2(p)))


@case("4.25", "data info on cache with truncated npz", needs="4.12")
def _(p: Probe):
    return _reports_damage(p.fs("data", "info", "cube-single-play", "--episodes", "5", "--cache-dir", _bad2(p)), 0)


@case("4.26", "train with flipped-bytes cache", needs="4.12")
def _(p: Probe):
    return one_error(p.fs("train", *BC, "--quiet", "--output-dir", "runs_ds", "--cache-dir", _bad1(p)), "sha256")


@case("4.27", "train with truncated cache", needs="4.12")
def _(p: Probe):
    return one_error(p.fs("train", *BC, "--quiet", "--output-dir", "runs_ds2", "--cache-dir", _bad2(p)), "train.npz")


@case("4.28", "train with cache missing provenance", needs="4.12")
def _(p: Probe):
    return one_error(p.fs("train", *BC, "--quiet", "--output-dir", "runs_ds3", "--cache-dir", _bad3(p)), "provenance")


@case("4.29", "data generate --force over a damaged copy", needs="4.12")
def _(p: Probe):
    cache = _bad3(p)
    result = p.fs("data", "generate", "cube-single-play", "--episodes", "5", "--force", "--quiet", "--cache-dir", cache)
    return both(succeeded(result), (p.fs("data", "verify", "--cache-dir", cache).rc == 0, "verified after"))


@case("4.30", "retry the same run with the right cache after a failed --cache-dir attempt", needs="4.26")
def _(p: Probe):
    return succeeded(p.fs("train", *BC, "--quiet", "--output-dir", "runs_ds"), "finished at step 600")


def _read_only_cache(p: Probe) -> str | None:
    target = p.path("cache_ro")
    if not target.exists():
        shutil.copytree(p.home / ".cache/flowsteer", target)
        if not p.make_immutable(target):
            return None
    return "./cache_ro"


@case("4.31", "train with a read-only cache holding the dataset", needs="4.12")
def _(p: Probe):
    cache = _read_only_cache(p)
    if cache is None:
        return True, "skipped: chattr unavailable"
    return succeeded(p.fs("train", *BC, "--quiet", "--cache-dir", cache, "--output-dir", "runs_ro"), "finished")


@case("4.32", "train with a read-only cache lacking the dataset (data seed 1)", needs="4.12")
def _(p: Probe):
    cache = _read_only_cache(p)
    if cache is None:
        return True, "skipped: chattr unavailable"
    result = p.fs("train", *BC, "--quiet", "--data-seed", "1", "--cache-dir", cache, "--output-dir", "runs_ro2")
    return one_error(result, "--cache-dir")


@case("4.33", "train with an output dir that cannot be written", needs="4.12")
def _(p: Probe):
    cache = _read_only_cache(p)
    if cache is None:
        return True, "skipped: chattr unavailable"
    return one_error(p.fs("train", *BC, "--quiet", "--cache-dir", cache, "--output-dir", "./cache_ro/runs"))


@case("4.34", "follow 4.32's advice: the same run with a writable --cache-dir", needs="4.32")
def _(p: Probe):
    result = p.fs("train", *BC, "--quiet", "--data-seed", "1", "--cache-dir", "./cache_rw", "--output-dir", "runs_ro2")
    return succeeded(result, "finished at step 600")


def _official(p: Probe, name: str) -> Path:
    source = p.home / ".cache/flowsteer/ogbench/cube-single-play__generated-n5-s0"
    target = p.root / name
    if not target.exists():
        target.mkdir()
        shutil.copy(source / "train.npz", target / "cube-single-play-v0.npz")
        shutil.copy(source / "train-val.npz", target / "cube-single-play-v0-val.npz")
    return target


@case("4.40", "data verify --write-manifest, writable official dir", needs="4.12")
def _(p: Probe):
    result = p.fs("data", "verify", "--data-dir", str(_official(p, "official")), "--write-manifest")
    return succeeded(result, "recorded in SHA256SUMS")


@case("4.41", "data verify --write-manifest, read-only official dir", needs="4.12")
def _(p: Probe):
    target = _official(p, "official_ro")
    if not p.make_immutable(target):
        return True, "skipped: chattr unavailable"
    return one_error(p.fs("data", "verify", "--data-dir", str(target), "--write-manifest"), "SHA256SUMS")


@case("4.42", "data verify with a non-UTF-8 SHA256SUMS", needs="4.12")
def _(p: Probe):
    target = _official(p, "official_bad")
    (target / "SHA256SUMS").write_bytes(b"\xff\xfe\x00binary")
    return one_error(p.fs("data", "verify", "--data-dir", str(target)), "SHA256SUMS")


@case("4.43", "data verify with a malformed SHA256SUMS line", needs="4.12")
def _(p: Probe):
    target = _official(p, "official_bad2")
    (target / "SHA256SUMS").write_text("abc  cube-single-play-v0.npz\n")
    return one_error(p.fs("data", "verify", "--data-dir", str(target)), "line 1")


# ---------------------------------------------------------------------------------------------- sweeps 2.xx


def sweep_file(p: Probe, name: str, text: str) -> str:
    p.write(f"sweeps/{name}", text)
    return f"sweeps/{name}"


BASE_RUN = "run: {offline_steps: 600, eval_interval: 200, eval_episodes: 2, data: {episodes: 5}}\nstorage: sweeps/out\n"
BASE = f"algorithms: {{bc: {{hyperparameters: {{actor_hidden_dims: [64, 64]}}}}}}\ntasks: [{TASK}]\n{BASE_RUN}"
SWEEP_FILES = {
    "2.01": ("malformed.yaml", "name: s1\ntasks: x\n  bad: [\n", ["YAML"]),
    "2.02": ("algo_str.yaml", f"name: s2\nalgorithms: bc\ntasks: [{TASK}]\n", ["algorithms"]),
    "2.03": ("empty_grid.yaml", f"name: s3\nalgorithms: {{bc: {{grid: {{lr: []}}}}}}\ntasks: [{TASK}]\n", ["lr"]),
    "2.04": ("empty_tasks.yaml", "name: s4\nalgorithms: [bc]\ntasks: []\n", ["tasks"]),
    "2.05": ("bad_mode.yaml", f"name: s5\nmode: random\nalgorithms: [bc]\ntasks: [{TASK}]\n", ["mode"]),
    "2.06": ("dup.yaml", f"name: s6\nalgorithms: [bc]\ntasks: [{TASK}]\nseeds: [0, 0]\n", ["seed"]),
    "2.07": ("seeds_str.yaml", f"name: s7\nalgorithms: [bc]\ntasks: [{TASK}]\nseeds: '3'\n", ["seeds"]),
    "2.08": ("grid_type.yaml", f"name: s8\nalgorithms: {{fql: {{grid: {{alpha: [abc]}}}}}}\ntasks: [{TASK}]\n",
             ["alpha"]),
    "2.09": ("run_neg.yaml", f"name: s9\nalgorithms: [bc]\ntasks: [{TASK}]\nrun: {{offline_steps: -1}}\n",
             ["offline_steps"]),
    "2.10": ("run_list.yaml", f"name: s10\nalgorithms: [bc]\ntasks: [{TASK}]\nrun: [1, 2]\n", ["run"]),
    "2.11": ("name_evil.yaml", f"name: ../evil\nalgorithms: [bc]\ntasks: [{TASK}]\n", ["name"]),
    "2.12": ("task_sel.yaml", "name: s12\nalgorithms: [bc]\ntasks: ['cube-single-play:7']\n", ["7"]),
    "2.13": ("nonutf8.yaml", b"\xff\xfename: s13\n", ["UTF-8"]),
    "2.14": ("empty.yaml", "", ["mapping"]),
    "2.15": ("maxfail.yaml", f"name: s15\nalgorithms: [bc]\ntasks: [{TASK}]\nmax_failures: -1\n", ["max_failures"]),
    "2.16": ("run_data_scalar.yaml", f"name: s16\nalgorithms: [bc]\ntasks: [{TASK}]\nrun: {{data: 5}}\n", ["data"]),
    "2.17": ("hp_list.yaml", f"name: s17\nalgorithms: {{bc: {{hyperparameters: [1, 2]}}}}\ntasks: [{TASK}]\n",
             ["hyperparameters"]),
    "2.18": ("cpu_nan.yaml", f"name: s18\n{BASE}resources: {{cpu: .nan}}\n", ["resources.cpu"]),
    "2.19": ("storage_list.yaml", f"name: s19\nalgorithms: [bc]\ntasks: [{TASK}]\nstorage: [a]\n", ["storage"]),
    "2.20": ("inf.yaml", "name: s20\nmode: optuna\n"
             f"algorithms: {{fql: {{search: {{alpha: {{loguniform: [10, .inf]}}}}}}}}\n"
             f"tasks: [{TASK}]\nstorage: sweeps/sweeps\n", ["loguniform"]),
    "2.22": ("dup_grid.yaml", f"name: s15b\nalgorithms: {{fql: {{grid: {{alpha: [10, 10.0, 10]}}}}}}\ntasks: [{TASK}]\n"
             f"{BASE_RUN}", ["alpha"]),
    "2.23": ("dupkey.yaml", f"name: s8c\nalgorithms:\n  bc: {{grid: {{lr: [0.2]}}}}\n  bc: {{grid: {{lr: [0.1]}}}}\n"
             f"tasks: [{TASK}]\n{BASE_RUN}", ["bc"]),
}  # fmt: skip
for _id, (_name, _content, _texts) in SWEEP_FILES.items():

    def _bad_sweep(p: Probe, name=_name, content=_content, texts=_texts):
        return one_error(p.fs("sweep", sweep_file(p, name, content), "--dry-run"), *texts)

    case(_id, f"sweep --dry-run {_name}")(_bad_sweep)


@case("2.21", "dry-run duplicate algorithms/tasks", needs="4.12")
def _(p: Probe):
    text = f"name: s8b\nalgorithms: [bc, bc]\ntasks: [{TASK}, cube-single-play:2]\n{BASE_RUN}"
    return succeeded(p.fs("sweep", sweep_file(p, "dup2.yaml", text), "--dry-run"), "1 grid trial(s)")


LOCO = f"name: s9l\nalgorithms: [bc]\ntasks: [antmaze-large-navigate:default]\n{BASE_RUN}"


@case("2.24", "dry-run of a locomotion task without data")
def _(p: Probe):
    return one_error(p.fs("sweep", sweep_file(p, "loco.yaml", LOCO), "--dry-run"), "antmaze-large-navigate")


@case("2.25", "dry-run with an absurd cpu request", needs="4.12")
def _(p: Probe):
    result = p.fs("sweep", sweep_file(p, "absurd_cpu.yaml", f"name: s5c\n{BASE}resources: {{cpu: 1000000}}\n"),
                  "--dry-run")  # fmt: skip
    return succeeded(result) if result.rc == 0 else one_error(result, "cpu")


@case("2.26", "real sweep, locomotion task without data")
def _(p: Probe):
    return one_error(p.fs("sweep", sweep_file(p, "loco.yaml", LOCO)), "antmaze-large-navigate")


@case("2.27", "real sweep, a generatable task and a locomotion task without data")
def _(p: Probe):
    text = (
        "name: s9m\nalgorithms: [bc]\ntasks: [cube-single-play:default, antmaze-large-navigate:default]\n"
        "run: {offline_steps: 600, eval_interval: 200, data: {episodes: 3}}\nstorage: sweeps/out\n"
    )
    result = p.fs("sweep", sweep_file(p, "loco_mixed.yaml", text))
    generated = list((p.home / ".cache/flowsteer/ogbench").glob("cube-single-play__generated-n3-*"))
    return both(one_error(result, "antmaze-large-navigate"), (not generated, f"generated first: {generated}"))


@case("2.28", "real sweep, cpu: 1000000 per trial", needs="4.12")
def _(p: Probe):
    return one_error(p.fs("sweep", "sweeps/absurd_cpu.yaml"), "resources.cpu")


@case("2.29", "real sweep, gpu: 4 on a CPU-only machine", needs="4.12")
def _(p: Probe):
    path = sweep_file(p, "absurd_gpu.yaml", f"name: s5g\n{BASE}resources: {{cpu: 1, gpu: 4}}\n")
    return one_error(p.fs("sweep", path), "resources.gpu")


# ---------------------------------------------------------------------------------------------- tracking 6.0x


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@case("6.01", "dead tracking server, with user:password in the URI", needs="4.12")
def _(p: Probe):
    port = _free_port()
    with_password = p.fs("train", *BC, "--quiet", "--output-dir", "runs_mlf_dead",
                         "--tracking-uri", f"http://alice:{PASSWORD}@127.0.0.1:{port}", timeout=150)  # fmt: skip
    leaked = PASSWORD in with_password.text or any(PASSWORD in f.read_text(errors="ignore")
                                                  for f in p.path("runs_mlf_dead").rglob("*.json"))  # fmt: skip
    if with_password.rc == 0:
        first = (with_password.seconds < 90 and not leaked, f"{with_password.seconds:.0f} s, password leaked: {leaked}")
    else:
        first = both(one_error(with_password, "MLFLOW_TRACKING_PASSWORD"), (not leaked, "password not shown"))
    dead = p.fs("train", *BC, "--quiet", "--output-dir", "runs_mlf_dead", "--tracking-uri",
                f"http://127.0.0.1:{port}", timeout=150)  # fmt: skip
    steps = eval_steps(run_dir(p, "runs_mlf_dead"))
    return both(first, succeeded(dead, "finished"), (dead.seconds < 90, f"dead server cost {dead.seconds:.0f} s"),
                (steps == [200, 400, 600], f"eval steps {steps}"))  # fmt: skip


@case("6.02", "malformed tracking URI", needs="4.12")
def _(p: Probe):
    result = p.fs(
        "train", *BC, "--quiet", "--output-dir", "runs_mlf_bad", "--tracking-uri", "htp:/bad uri", timeout=300
    )
    return succeeded(result, "finished")


@case("6.03", "sync a run whose server is dead", needs="6.01")
def _(p: Probe):
    result = p.fs("sync", str(run_dir(p, "runs_mlf_dead")), timeout=60)
    return (result.rc == 1 and result.seconds < 30 and "Traceback" not in result.err,
            f"rc {result.rc} in {result.seconds:.0f} s: {last_line(result.text)}")  # fmt: skip


@case("6.04", "sync a directory that does not exist")
def _(p: Probe):
    result = p.fs("sync", "runs_nope/x")
    return (result.rc in (1, 2) and "Traceback" not in result.err, last_line(result.text))


@case("6.05", "sync with a corrupt tracking.json", needs="6.02")
def _(p: Probe):
    target = p.path("runs_mlf_bad2") / run_dir(p, "runs_mlf_bad").name
    if not target.exists():
        shutil.copytree(run_dir(p, "runs_mlf_bad"), target)
    (target / "tracking.json").write_text('{"tracking_uri":\n')
    result = p.fs("sync", str(target))
    return (result.rc in (1, 2) and "Traceback" not in result.err and "tracking.json" in result.text,
            last_line(result.text))  # fmt: skip


@case("6.06", "sync a run recorded with a malformed URI to a corrected one", needs="6.02")
def _(p: Probe):
    directory = str(run_dir(p, "runs_mlf_bad"))
    stuck = p.fs("sync", directory)
    fixed = p.fs("sync", directory, "--tracking-uri", f"sqlite:///{p.work}/mlflow-fixed.db")
    return both((stuck.rc == 1 and "Traceback" not in stuck.err, last_line(stuck.text)), succeeded(fixed, "in sync"))


# ---------------------------------------------------------------------------------------------- reports 5.xx


def fake_run(p: Probe, folder: str, algo: str, seed: int, values: dict[int, float], *, offline_steps: int | None = None,
             eval_episodes: int = 2, hyperparameters: dict | None = None, name: str | None = None,
             checkpoint_interval: int | None = None) -> Path:  # fmt: skip
    """A run directory written by hand from the real run of 3.00 (same provenance), with chosen evaluations."""
    source = run_dir(p, "runs_base")
    config = json.loads((source / "config.json").read_text())
    protocol = json.loads((source / "protocol.json").read_text())
    steps = sorted(values)
    offline = offline_steps or steps[-1]
    digest = hashlib.sha1(repr(hyperparameters).encode()).hexdigest()[:6]
    run_id = name or f"{algo}-fake-s{seed}-{offline}-{eval_episodes}-{digest}"
    target = p.path(folder) / run_id
    target.mkdir(parents=True)
    config["run"] |= {"algo": algo, "seed": seed, "offline_steps": offline, "eval_episodes": eval_episodes,
                      "eval_interval": steps[0], "hyperparameters": hyperparameters or {}}  # fmt: skip
    if checkpoint_interval:
        config["run"]["checkpoint_interval"] = checkpoint_interval
    config["run_id"] = run_id
    protocol |= {"algo": algo, "seed": seed, "run_id": run_id, "offline_steps": offline}
    protocol["evaluation"] |= {"steps": steps, "episodes": eval_episodes, "interval": steps[0]}
    (target / "config.json").write_text(json.dumps(config))
    (target / "protocol.json").write_text(json.dumps(protocol))
    header = (source / "eval.csv").read_text().splitlines()[0].split(",")
    row = {"episode_length": 100.0, "episodes": float(eval_episodes), "wall_time": time.time()}
    lines = [",".join(header)]
    for step in steps:
        cells = row | {"step": float(step), "success": values[step], "episode_return": -100.0 + values[step]}
        lines.append(",".join(repr(float(cells[c])) for c in header))
    (target / "eval.csv").write_text("\n".join(lines) + "\n")
    (target / "status.json").write_text(json.dumps({"state": "finished", "step": offline}))
    return target


def report_rows(p: Probe, folder: str) -> list[dict]:
    import csv

    path = p.path(folder) / "report" / "report-task.csv"
    return list(csv.DictReader(path.open())) if path.exists() else []


HAND = {("bc", 0): [1.0, 0.2, 0.5, 0.7], ("bc", 1): [0.0, 0.9, 0.4, 0.6], ("fql", 0): [1.0, 0.1, 0.8, 0.3],
        ("fql", 1): [0.0, 0.6, 0.2, 1.0]}  # fmt: skip


def hand_runs(p: Probe, folder: str = "hand") -> None:
    if p.path(folder).exists():
        return
    for (algo, seed), values in HAND.items():
        fake_run(p, folder, algo, seed, dict(zip([500, 1000, 2000, 3000], values, strict=True)))


@case("5.01", "report on an empty dir")
def _(p: Probe):
    p.path("empty").mkdir(exist_ok=True)
    return one_error(p.fs("report", "empty"), "No runs")


@case("5.02", "report on a dir that does not exist")
def _(p: Probe):
    return one_error(p.fs("report", "nothere"), "nothere")


@case("5.03", "report on real runs, csv+latex+md, task and published layouts", needs="3.00")
def _(p: Probe):
    shutil.copytree(p.path("runs_base"), p.path("qs"), dirs_exist_ok=True)
    return succeeded(p.fs("report", "qs", "--format", "csv,latex,md", "--layout", "task,published"), "FQL (paper)")


@case("5.04", "report: two runs of one algorithm, task and seed (differing only in checkpoint_interval)",
      needs="3.05")  # fmt: skip
def _(p: Probe):
    for folder in ("runs_base", "runs_kill2"):
        shutil.copytree(run_dir(p, folder), p.path("dupseed") / run_dir(p, folder).name, dirs_exist_ok=True)
    result = p.fs("report", "dupseed", "--format", "csv,md")
    if result.rc == 0:
        counted_twice = any(r["n_seeds"] in ("2", "2.0") for r in report_rows(p, "dupseed"))
        return (not counted_twice, "seed 0 counted twice" if counted_twice else last_line(result.err))
    return one_error(result, "seed 0")


@case("5.05", "report on hand-edited runs (4 evaluations)", needs="3.00")
def _(p: Probe):
    hand_runs(p)
    result = p.fs("report", "hand", "--format", "csv,latex,md", "--layout", "task,category")
    cells = {r["method"]: (float(r["mean"]), float(r["std"])) for r in report_rows(p, "hand")}
    expected = {"bc": (55.0, 25 / 3), "fql": (50.0, 10.0)}  # last 3 of 4 evaluations, by hand (ddof 0)
    right = set(cells) == set(expected) and all(
        abs(cells[m][0] - e[0]) < 1e-9 and abs(cells[m][1] - e[1]) < 1e-9 for m, e in expected.items()
    )
    return both(succeeded(result), (right, f"cells {cells}"))


@case("5.06", "LaTeX escaping of method labels", needs="3.00")
def _(p: Probe):
    for seed, dims in enumerate([[32, 32], [64, 64]]):
        fake_run(
            p, "tex", "flow_bc", seed, {1000: 0.5, 2000: 0.5, 3000: 0.5}, hyperparameters={"actor_hidden_dims": dims}
        )
    result = p.fs("report", "tex", "--format", "latex,md,csv", "--layout", "task")
    tex = (p.path("tex/report/report-task.tex")).read_text() if p.path("tex/report/report-task.tex").exists() else ""
    return both(succeeded(result), ("flow\\_bc" in tex and "actor\\_hidden\\_dims" in tex, "escaped"))


BROKEN = {
    "5.07": ("br1", "one run with a truncated config.json", lambda r: os.truncate(r / "config.json", 23)),
    "5.08": ("br2", "one run with an empty eval.csv", lambda r: (r / "eval.csv").write_text("")),
    "5.09": ("br3", "one run with a non-numeric eval.csv",
             lambda r: (r / "eval.csv").write_text("step,success\nabc,0.5\n")),
    "5.10": ("br4", "one run with a truncated protocol.json", lambda r: os.truncate(r / "protocol.json", 15)),
    "5.11": ("br5", "one run with a truncated status.json", lambda r: os.truncate(r / "status.json", 10)),
    "5.12": ("br6", "one run with a NUL-padded eval.csv", lambda r: (r / "eval.csv").write_bytes(
        (r / "eval.csv").read_bytes()[:50] + b"\0" * 56)),
    "5.13": ("br7", "one run with a binary eval.csv", lambda r: (r / "eval.csv").write_bytes(b"\xff\xfe\x00\x01\x02")),
}  # fmt: skip
for _id, (_folder, _title, _damage) in BROKEN.items():

    def _broken(p: Probe, folder=_folder, damage=_damage):
        shutil.copytree(run_dir(p, "runs_base"), p.path(folder) / run_dir(p, "runs_base").name)
        broken = fake_run(p, folder, "fql", 1, {200: 0.5, 400: 0.5, 600: 0.5})
        damage(broken)
        result = p.fs("report", folder, "--format", "csv")
        if result.rc == 0:
            named = broken.name in result.err and "warning" in result.err
            return (named and "Traceback" not in result.err, last_line(result.err) or "no warning about the broken run")
        return one_error(result, broken.name)

    case(_id, f"report: {_title}", needs="3.00")(_broken)


@case("5.14", "report: mixed offline_steps (3000 vs 6000) and eval episodes (10 vs 50) in one cell", needs="3.00")
def _(p: Probe):
    fake_run(p, "mixed", "bc", 0, {1000: 0.2, 2000: 0.5, 3000: 0.7}, eval_episodes=10)
    fake_run(p, "mixed", "bc", 1, {2000: 0.9, 4000: 0.4, 6000: 0.6}, eval_episodes=50)
    fake_run(p, "mixed", "fql", 0, {1000: 0.1, 2000: 0.8, 3000: 0.3}, eval_episodes=10)
    fake_run(p, "mixed", "fql", 1, {2000: 0.6, 4000: 0.2, 6000: 1.0}, eval_episodes=50)
    result = p.fs("report", "mixed", "--format", "csv,md")
    if result.rc != 0:
        return one_error(result)
    mixed = [r["method"] for r in report_rows(p, "mixed") if r["n_seeds"] in ("2", "2.0")]
    return (not mixed, f"averaged together: {mixed}" if mixed else last_line(result.err))


@case("5.15a", "real run: fql seed 1, 900 steps", needs="4.12")
def _(p: Probe):
    args = [a if a not in ("600", "200") else {"600": "900", "200": "300"}[a] for a in TINY]
    return succeeded(p.fs("train", *args, "--seed", "1", "--output-dir", "runs_mix", "--quiet"), "finished at step 900")


@case("5.15", "report on real runs: fql s0 600 steps + fql s1 900 steps", needs="5.15a,3.00")
def _(p: Probe):
    shutil.copytree(run_dir(p, "runs_base"), p.path("runs_mix") / run_dir(p, "runs_base").name, dirs_exist_ok=True)
    result = p.fs("report", "runs_mix", "--format", "csv,md")
    if result.rc != 0:
        return one_error(result)
    mixed = [r["method"] for r in report_rows(p, "runs_mix") if r["n_seeds"] in ("2", "2.0")]
    return (not mixed, f"averaged together: {mixed}" if mixed else last_line(result.err))


@case("5.16a", "report (creates the cache)", needs="3.00")
def _(p: Probe):
    hand_runs(p, "cache_t")
    return succeeded(p.fs("report", "cache_t", "--format", "csv"))


@case("5.16", "report after a same-size edit with its mtime kept (documented: cache keyed on size and mtime)",
      needs="5.16a")  # fmt: skip
def _(p: Probe):
    target = next(p.path("cache_t").glob("bc-fake-s0*")) / "eval.csv"
    stat = target.stat()
    lines = target.read_text().splitlines()
    column = lines[0].split(",").index("success")
    last = lines[-1].split(",")
    last[column] = "0.4"  # was 0.7: the same size
    target.write_text("\n".join([*lines[:-1], ",".join(last)]) + "\n")
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return succeeded(p.fs("report", "cache_t", "--format", "csv"))


@case("5.16b", "report --no-cache sees the edit", needs="5.16")
def _(p: Probe):
    result = p.fs("report", "cache_t", "--format", "csv", "--no-cache")
    bc = [float(r["mean"]) for r in report_rows(p, "cache_t") if r["method"] == "bc"]
    return both(succeeded(result), (bc and abs(bc[0] - 50.0) < 1e-9, f"bc {bc}"))


@case("5.17", "report --format pdf", needs="5.05")
def _(p: Probe):
    return one_error(p.fs("report", "hand", "--format", "pdf"), "pdf")


@case("5.18", "report --layout bogus", needs="5.05")
def _(p: Probe):
    return one_error(p.fs("report", "hand", "--layout", "bogus"), "bogus")


@case("5.19", "report --last-k 0", needs="5.05")
def _(p: Probe):
    return one_error(p.fs("report", "hand", "--last-k", "0"), "--last-k")


@case("5.20", "report --out not writable", needs="5.05,4.31")
def _(p: Probe):
    if not p.path("cache_ro").exists():
        return True, "skipped: chattr unavailable"
    return one_error(p.fs("report", "hand", "--out", "./cache_ro/rep", "--format", "csv"), "cache_ro")


@case("5.21", "report --last-k 10 (more than scheduled)", needs="5.05")
def _(p: Probe):
    return succeeded(p.fs("report", "hand", "--last-k", "10", "--format", "csv"))


@case("5.22", "report mlflow: a missing experiment")
def _(p: Probe):
    return one_error(p.fs("report", "mlflow:nope", "--tracking-uri", f"sqlite:///{p.work}/mlflow.db", "--out", "rep/m"),
                     "nope")  # fmt: skip


@case("5.23", "report mlflow: an experiment holding a run logged with offline_steps 1e30", needs="3.00")
def _(p: Probe):
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{p.work}/mlflow.db")
    experiment = client.get_experiment_by_name("flowsteer").experiment_id
    tags = {"algo": "fql", "task": TASK, "seed": "7", "run_id": "fql-huge-1e30", "flowsteer": "run"}
    run = client.create_run(experiment, run_name="fql-huge-1e30", tags=tags)  # as an older flowsteer logged it
    params = {"run.offline_steps": "1" + "0" * 30, "run.online_steps": "0", "run.eval_interval": "100000"}
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    client.set_terminated(run.info.run_id)
    result = p.fs("report", "mlflow:flowsteer", "--tracking-uri", f"sqlite:///{p.work}/mlflow.db", "--out", "rep/m",
                  "--format", "csv", timeout=180, memory_gb=6)  # fmt: skip
    return succeeded(result) if result.rc == 0 else one_error(result)


@case("5.24", "report: a folder with a run killed before its first status.json", needs="3.00")
def _(p: Probe):
    shutil.copytree(run_dir(p, "runs_base"), p.path("early") / run_dir(p, "runs_base").name)
    early = p.path("early/fql-killed-early")
    early.mkdir()
    (early / "config.json").write_text((run_dir(p, "runs_base") / "config.json").read_text())
    result = p.fs("report", "early", "--format", "csv")
    if result.rc == 0:
        return ("fql-killed-early" in result.err and "Traceback" not in result.err, last_line(result.err))
    return one_error(result, "fql-killed-early")


# ---------------------------------------------------------------------------------------------- credentials 7.0x


CRED_SWEEP = f"name: s-creduri\n{BASE}seeds: [3]\ntracking_uri: http://bob:Hunter2Secret@127.0.0.1:PORT\n"


def temp_dir_of(p: Probe, sweep: str) -> Path:
    """The Ray temp dir of the probe's sweep ``sweep`` (storage sweeps/out), as flowsteer derives it."""
    sweep_dir = (p.work / "sweeps" / "out" / sweep).absolute()
    digest = hashlib.sha256(str(sweep_dir).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"fsray-{os.getuid()}-{digest}"


def _leaks(p: Probe, secret: str, sweeps: tuple[str, ...] = ()) -> list[str]:
    """Files flowsteer wrote (under the scratch dir, or in the named sweeps' Ray temp dirs) that hold ``secret``;
    the sweep files the probe itself wrote with it are the user's, not leaks."""
    found = []
    roots = [p.root, *(temp_dir_of(p, s) for s in sweeps)]
    for root in roots:
        for path in root.rglob("*") if root.is_dir() else []:
            if path.parent == p.work / "sweeps" and path.suffix == ".yaml":
                continue
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_size < 50_000_000 and secret.encode() in path.read_bytes():
                    found.append(str(path))
    return found


@case("7.01", "sweep dry-run with user:password in tracking_uri", needs="4.12")
def _(p: Probe):
    result = p.fs("sweep", sweep_file(p, "cred_uri.yaml", CRED_SWEEP.replace("PORT", str(_free_port()))), "--dry-run")
    shown = "Hunter2Secret" in result.text
    return (not shown and "Traceback" not in result.err, "password shown" if shown else last_line(result.text))


@case("7.02", "real sweep with MLFLOW_TRACKING_USERNAME/PASSWORD in the environment", needs="4.12")
def _(p: Probe):
    env = p.env(MLFLOW_TRACKING_USERNAME="carol", MLFLOW_TRACKING_PASSWORD=ENV_PASSWORD)
    result = p.fs("sweep", sweep_file(p, "cred.yaml", f"name: s-cred\n{BASE}"), env=env, timeout=600)
    return succeeded(result, "summary")


@case("5.25", "report --stats --plots on 2 seeds", needs="5.05")
def _(p: Probe):
    return succeeded(p.fs("report", "hand", "--stats", "--plots", "--format", "csv", "--out", "rep/hand_stats"))


@case("5.26", "report --stats --plots on a single run", needs="3.00")
def _(p: Probe):
    shutil.copytree(run_dir(p, "runs_base"), p.path("one") / run_dir(p, "runs_base").name, dirs_exist_ok=True)
    result = p.fs("report", "one", "--stats", "--plots", "--format", "csv", "--layout", "task,category,published")
    return succeeded(result)


# ---------------------------------------------------------------------------------------------- sweeps 2.4x-2.5x


KILL_SWEEP = (
    f"name: s-kill\n{BASE}seeds: [4, 5]\nrun: {{offline_steps: 600, eval_interval: 200, eval_episodes: 2, "
    f"checkpoint_interval: 200, data: {{episodes: 5}}}}\n"
)


@case("2.40", "sweep driver SIGKILLed 1 s after the first trial checkpoint", needs="4.12")
def _(p: Probe):
    text = KILL_SWEEP.replace(f"{BASE_RUN}", "storage: sweeps/out\n")
    process = p.start("sweep", sweep_file(p, "killsw.yaml", text))
    killed = p.kill_when(process, "sweeps/out/s-kill/runs/*/checkpoints/LATEST", delay=1.0, timeout=400)
    return (killed, "killed after a checkpoint" if killed else "the sweep ended before the kill")


@case("2.41", "rerun the killed sweep without --resume", needs="2.40")
def _(p: Probe):
    return one_error(p.fs("sweep", "sweeps/killsw.yaml"), "--resume")


@case("2.42", "rerun the killed sweep with --resume", needs="2.40")
def _(p: Probe):
    result = p.fs("sweep", "sweeps/killsw.yaml", "--resume", timeout=600)
    runs = sorted(r for r in p.path("sweeps/out/s-kill/runs").iterdir() if (r / "config.json").exists())
    steps = [eval_steps(r) for r in runs]
    return both(succeeded(result, "summary"), (steps == [[200, 400, 600]] * 2, f"eval steps {steps}"))


@case("2.43", "sweep --storage not writable", needs="4.31")
def _(p: Probe):
    if not p.path("cache_ro").exists():
        return True, "skipped: chattr unavailable"
    base = sweep_file(p, "base.yaml", f"name: s-base\n{BASE}")
    return one_error(p.fs("sweep", base, "--storage", "./cache_ro/sw"), "cache_ro")


@case("2.44", "sweep file missing")
def _(p: Probe):
    return one_error(p.fs("sweep", "nope.yaml", "--dry-run"), "nope.yaml")


for _id, _example in [("2.45", "fql-tune-then-broadcast"), ("2.46", "fql-optuna"), ("2.47", "fql-paper-offline")]:

    def _example_dry(p: Probe, example=_example):
        result = p.fs("sweep", str(REPO / "examples" / f"{example}.yaml"), "--dry-run", "--storage", "sweeps/exdry")
        if result.rc == 0:
            return succeeded(result, "trial")
        return both(one_error(result, "not on this machine"), ("trial" in result.out, "lists the trials first"))

    case(_id, f"dry-run of examples/{_example}.yaml")(_example_dry)


@case("2.48", "dry-run of a finished sweep", needs="4.12")
def _(p: Probe):
    base = sweep_file(p, "base.yaml", f"name: s-base\n{BASE}")
    done = p.fs("sweep", base, timeout=600)
    return both(succeeded(done), succeeded(p.fs("sweep", base, "--dry-run"), "1 finished"))


@case("2.49", "sweep --address to nothing (127.0.0.1:1)", needs="4.12")
def _(p: Probe):
    path = sweep_file(p, "addr.yaml", f"name: s-addr\n{BASE}")
    return one_error(p.fs("sweep", path, "--address", "127.0.0.1:1", timeout=90), "127.0.0.1:1")


@case("1.50", "train --eval-episodes 0", needs="4.12")
def _(p: Probe):
    args = [a if a != "2" else "0" for a in BC]
    result = p.fs("train", *args, "--output-dir", "runs_ev0", "--quiet")
    claims = "eval.csv" in result.out and not (run_dir(p, "runs_ev0") / "eval.csv").exists()
    return both(succeeded(result, "finished"), (not claims, "claims an eval.csv that does not exist"))


@case("5.27", "report on a finished run trained with --eval-episodes 0", needs="1.50")
def _(p: Probe):
    result = p.fs("report", "runs_ev0", "--format", "csv")
    said = "eval_episodes 0" in result.err or "without evaluations" in result.err
    wrong = "--resume" in result.err
    return ((result.rc in (0, 2)) and said and not wrong and "Traceback" not in result.err, last_line(result.err))


@case("4.50", "data generate with seed 2**70, 1 episode")
def _(p: Probe):
    args = ["data", "generate", "cube-single-play", "--episodes", "1", "--seed", str(2**70), "--quiet", "--cache-dir",
            "./cache_seed"]  # fmt: skip
    return succeeded(p.fs(*args))


@case("4.51", "data info --stats for a copy that does not exist")
def _(p: Probe):
    return one_error(p.fs("data", "info", "cube-single-play-singletask-task3-v0", "--episodes", "7", "--stats"), "7")


@case("2.50", "sweep with run.eval_episodes: 0", needs="4.12")
def _(p: Probe):
    text = f"name: s-ev0\n{BASE.replace('eval_episodes: 2', 'eval_episodes: 0')}"
    result = p.fs("sweep", sweep_file(p, "ev0.yaml", text), timeout=400)
    return one_error(result, "eval_episodes")


# ---------------------------------------------------------------------------------------------- o2o, DSRL


O2O = ["--algo", "fql", "--task", TASK, "--offline-steps", "200", "--online-steps", "400", "--eval-interval", "200",
       "--checkpoint-interval", "100", "--log-interval", "100", "--eval-episodes", "2", "--episodes", "5", "--hp",
       "actor_hidden_dims=[64,64]", "--hp", "value_hidden_dims=[64,64]", "--quiet"]  # fmt: skip


@case("3.30", "offline-to-online baseline (uninterrupted)", needs="4.12")
def _(p: Probe):
    return succeeded(p.fs("train", *O2O, "--output-dir", "runs_o2o_base"), "finished at step 600")


@case("3.31", "offline-to-online run killed 1 s after the online checkpoint at step 400", needs="4.12")
def _(p: Probe):
    process = p.start("train", *O2O, "--output-dir", "runs_o2o_kill")
    killed = p.kill_when(process, "runs_o2o_kill/*/checkpoints/step_000000400/meta.json", delay=1.0)
    return (killed, "killed" if killed else "ended before the kill")


@case("3.32", "offline-to-online resume after the kill", needs="3.30,3.31")
def _(p: Probe):
    result = p.fs("train", *O2O, "--output-dir", "runs_o2o_kill", "--resume")
    same = all(measurements(run_dir(p, "runs_o2o_kill") / n) == measurements(run_dir(p, "runs_o2o_base") / n)
               for n in ("eval.csv", "train.csv"))  # fmt: skip
    return both(succeeded(result, "finished at step 600"), (same, "logs as the uninterrupted run's"))


DSRL = ["--algo", "dsrl_na", "--task", TASK, "--offline-steps", "600", "--eval-interval", "200", "--eval-episodes", "2",
        "--episodes", "5", "--hp", "actor_hidden_dims=[64,64]", "--hp", "value_hidden_dims=[64,64]", "--quiet",
        "--output-dir", "runs_dsrl"]  # fmt: skip


@case("1.60", "dsrl_na base_run that does not exist", needs="4.12")
def _(p: Probe):
    return one_error(p.fs("train", *DSRL, "--hp", "base_run=./nope"), "base_run")


@case("1.61", "dsrl_na base_run = a bc run", needs="4.30")
def _(p: Probe):
    return one_error(p.fs("train", *DSRL, "--hp", f"base_run={run_dir(p, 'runs_ds')}"), "bc")


@case("1.62", "dsrl_na base_run with a corrupted checkpoint", needs="3.05")
def _(p: Probe):
    target = p.path("base_bad") / run_dir(p, "runs_kill2").name
    shutil.copytree(run_dir(p, "runs_kill2"), target)
    _flip(sorted(target.glob("checkpoints/step_*"))[-1] / "arrays.npz")
    return one_error(p.fs("train", *DSRL, "--hp", f"base_run={target}"), "base_run")


@case("7.03", "real sweep with user:password in tracking_uri (killed after 25 s)", needs="4.12")
def _(p: Probe):
    path = sweep_file(p, "cred_uri.yaml", CRED_SWEEP.replace("PORT", str(_free_port())))
    result = p.fs("sweep", path, timeout=25)
    leaks = _leaks(p, "Hunter2Secret", ("s-creduri",))
    return (
        not leaks and "Hunter2Secret" not in result.text,
        f"password in {leaks[:3]}" if leaks else "no file holds it",
    )


@case("1.63", "fql --hp flow_steps=0", needs="4.12")
def _(p: Probe):
    return one_error(p.fs("train", *TINY, "--hp", "flow_steps=0", "--quiet", "--output-dir", "runs_fs0"), "flow_steps")


@case("5.28", "report: eval.csv's last row cut mid-number (0.7 -> 0.)", needs="5.05")
def _(p: Probe):
    hand_runs(p, "trunc")
    target = next(p.path("trunc").glob("bc-fake-s0*")) / "eval.csv"
    os.truncate(target, target.stat().st_size - 2)  # as `truncate -s -2`: the last value and its newline cut
    result = p.fs("report", "trunc", "--format", "csv")
    if result.rc != 0:
        return one_error(result, "eval.csv")
    flagged = "incomplete" in result.err or "newline" in result.err
    return (flagged, last_line(result.err) or "nothing flagged")


# ---------------------------------------------------------------------------------------------- checked by hand


@case("3.20", "two identical train commands at the same time, same output dir", needs="4.12")
def _(p: Probe):
    first = p.start("train", *TINY, "--quiet", "--output-dir", "runs_conc")
    second = p.start("train", *TINY, "--quiet", "--output-dir", "runs_conc")
    rcs = [first.wait(600), second.wait(600)]
    steps = eval_steps(run_dir(p, "runs_conc"))
    return (steps == [200, 400, 600] and 0 in rcs, f"exit codes {rcs}, eval steps {steps}")


@case("1.40b", "memory of the 1e30-steps run", needs="4.12")
def _(p: Probe):
    import psutil

    args = [a if a != "600" else "1" + "0" * 30 for a in TINY]
    process = p.start("train", *args, "--output-dir", "runs_huge2", "--quiet")
    peak, deadline = 0, time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, psutil.Process(process.pid).memory_info().rss)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    rc = process.wait()
    return (rc == 2 and peak < 2**30, f"exit code {rc}, peak RSS {peak / 2**30:.2f} GB")


def _during_sweep(p: Probe, name: str, check: Callable[[Path], str | None]) -> tuple[bool, str]:
    """Run a tiny sweep and call ``check(its Ray temp dir)`` while it trains; a string back is a problem."""
    path = sweep_file(p, f"{name}.yaml", f"name: {name}\n{BASE}")
    sweep_dir = p.work / "sweeps" / "out" / name
    temp = temp_dir_of(p, name)
    process = p.start("sweep", path)
    problems: list[str] = []
    checked = False
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if list((sweep_dir / "runs").glob("*/eval.csv")):
            time.sleep(1)
            problem = check(temp)
            checked = True
            if problem:
                problems.append(problem)
            break
        time.sleep(0.2)
    process.wait(600)
    if not checked:
        return False, "the sweep ended before the check"
    return (not problems, "; ".join(problems) or "ok")


def _listening(temp: Path) -> str | None:
    import psutil

    exposed = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            mine = str(temp) in " ".join(process.info["cmdline"] or []) or any(
                str(temp) in f.path for f in process.open_files()
            )
            if not mine:
                continue
            for connection in process.net_connections("inet"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr.ip not in (
                    "127.0.0.1",
                    "::ffff:127.0.0.1",
                    "::1",
                ):
                    exposed.append(f"{process.info['pid']} on {connection.laddr.ip}:{connection.laddr.port}")
    return f"listening beyond loopback: {exposed[:4]}" if exposed else None


@case("7.04", "addresses the private cluster listens on during a sweep", needs="4.12")
def _(p: Probe):
    return _during_sweep(p, "s-net", _listening)


def _token(temp: Path) -> str | None:
    tokens = [p for p in temp.rglob("auth_token") if p.exists()] if temp.exists() else []
    loose = [f"{t} mode {oct(t.stat().st_mode & 0o777)}" for t in tokens if t.stat().st_mode & 0o077]
    return f"token readable by others: {loose}" if loose else None


@case("7.05", "permissions of the Ray token", needs="4.12")
def _(p: Probe):
    home_token = p.home / ".ray" / "auth_token"

    def check(temp: Path) -> str | None:
        if home_token.exists() and home_token.stat().st_mode & 0o077:
            return f"{home_token} mode {oct(home_token.stat().st_mode & 0o777)}"
        return _token(temp)

    return _during_sweep(p, "s-token", check)


@case("7.06", "no pickle read from user files")
def _(p: Probe):
    code = subprocess.run([sys.executable, "-c", "import flowsteer, pathlib; print(pathlib.Path(flowsteer.__file__)"
                           ".parent)"], capture_output=True, text=True, env=p.env()).stdout.strip()  # fmt: skip
    hits = [str(f) for f in Path(code).rglob("*.py") if re.search(r"allow_pickle=True|pickle\.load", f.read_text())]
    return (not hits, f"pickle in {hits}" if hits else "none")


@case("7.07", "the private cluster's temp dir: owner-only, removed at the end", needs="4.12")
def _(p: Probe):
    seen: list[Path] = []

    def check(temp: Path) -> str | None:
        seen.append(temp)
        mode = temp.stat().st_mode & 0o777 if temp.exists() else None
        return f"{temp} mode {oct(mode)}" if mode is not None and mode & 0o077 else None

    verdict = _during_sweep(p, "s-tmp", check)
    left = [t for t in seen if t.exists()]
    return both(verdict, (not left, f"left behind: {left}"))


@case("7.08", "credentials from the environment written anywhere?", needs="7.02")
def _(p: Probe):
    leaks = _leaks(p, ENV_PASSWORD, ("s-cred",))
    return (not leaks, f"in {leaks[:3]}" if leaks else "nowhere")


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated case ids (their prerequisites run too)")
    parser.add_argument("--pythonpath", help="run the flowsteer found here instead of the installed one")
    parser.add_argument("--markdown", type=Path, help="also write the results as a Markdown table")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    wanted = _with_prerequisites(args.only.split(",")) if args.only else [c.id for c in CASES]
    root = Path(tempfile.mkdtemp(prefix="fsprobe-"))
    probe = Probe(root, args.pythonpath)
    print(f"scratch {root}; flowsteer from {args.pythonpath or 'this environment'}", flush=True)
    verdicts = []
    try:
        for entry in CASES:
            if entry.id not in wanted:
                continue
            started = time.monotonic()
            try:
                ok, why = entry.run(probe)
            except Exception as exc:  # a case that cannot even be set up counts against the product
                ok, why = False, f"probe failed: {type(exc).__name__}: {exc}"[:300]
            verdict = Verdict(entry.id, entry.title, bool(ok), why, time.monotonic() - started)
            verdicts.append(verdict)
            print(f"{entry.id:6s} {'ok ' if ok else 'BAD'} {verdict.seconds:6.1f}s  {entry.title}: {why}", flush=True)
    finally:
        probe.restore()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    good = sum(v.ok for v in verdicts)
    print(f"\n{len(verdicts)} cases: {good} acceptable, {len(verdicts) - good} defective")
    if args.markdown:
        lines = ["| case | verdict | seconds | what | detail |", "|---|---|---:|---|---|"]
        lines += [f"| {v.case} | {'ok' if v.ok else '**defect**'} | {v.seconds:.1f} | {v.title} | "
                  f"{v.why.replace('|', '/')} |" for v in verdicts]  # fmt: skip
        lines.append(f"\n{len(verdicts)} cases: {good} acceptable, {len(verdicts) - good} defective")
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0 if good == len(verdicts) else 1


def _with_prerequisites(ids: list[str]) -> set[str]:
    by_id = {c.id: c for c in CASES}
    wanted: set[str] = set()
    stack = list(ids)
    while stack:
        current = stack.pop()
        if current in by_id and current not in wanted:
            wanted.add(current)
            stack += by_id[current].needs
    return wanted


if __name__ == "__main__":
    sys.exit(main())
