"""The commands README.md and docs/*.md show exist and parse, and their links resolve (no Ray, nothing run).

Every `c2s ...` line of a shell code block (in a transcript, every `$ c2s ...` line), and every
`python jobs/X.py ...` (checked as the c2s command its entrypoint runs), is checked for what can be checked
without running it: the command is in c2s.cli.COMMANDS; its module's own argparse parser accepts the
arguments; a config it names exists; its `key=value` overrides apply to that config (to a run's config:
to one of c2s/configs) with c2s.config.apply_overrides; a sweep spec it names loads with its `--set` edits;
a catalog dataset it names exists. UPPER_CASE words (RUN, ROOT, SWEEP_DIR) are placeholders for a user's
file or value and are not checked; nor is anything only a real run can check (a run directory, a dataset
folder, weights).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
SHELL_FENCES = frozenset({"", "bash", "sh", "shell", "console"})
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9_]*\b")  # N, RUN, SWEEP_DIR, /data/ROOT, MYDATA.yaml
SHELL_STOP = frozenset({"|", "||", "&&", ";", "&", ">", ">>", "2>", "<"})
JOB = re.compile(r"(?:^|\s)python3?\s+(jobs/\w+\.py)(\s.*)?$")


@dataclass(frozen=True)
class DocCommand:
    file: str  # relative to the repo
    line: int  # of the command's first line
    text: str  # as written (continuation lines joined)
    module: str | None  # jobs/X.py: the module whose main() it runs; None: a `c2s` command
    argv: tuple[str, ...]  # after `c2s` (or after jobs/X.py)

    def where(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


class DocCommandError(AssertionError):
    pass


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace):
        super().__init__("parsed")
        self.namespace = namespace


def is_placeholder(word: Any) -> bool:
    return isinstance(word, str) and PLACEHOLDER.search(word) is not None


# --- extraction ------------------------------------------------------------------------------------------

def shell_blocks(path: Path) -> list[list[tuple[int, str]]]:
    """The lines (number, text) of each fenced code block in a shell language (or none)."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    fence, keep = None, False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            opened = re.match(r"(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if opened:
                fence, keep, current = opened.group(1), opened.group(2).lower() in SHELL_FENCES, []
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            if keep:
                blocks.append(current)
            fence = None
        elif keep:
            current.append((number, line))
    return blocks


def logical_lines(block: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Shell lines with `\\` continuations joined; in a transcript (any `$ ` line) only the `$ ` lines."""
    transcript = any(text.lstrip().startswith("$ ") for _, text in block)
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, text in block:
        if pending is None:
            stripped = text.strip()
            if transcript:
                if not stripped.startswith("$ "):
                    continue
                stripped = stripped[2:].strip()
            pending = (number, stripped)
        else:
            pending = (pending[0], pending[1] + " " + text.strip())
        if pending[1].endswith("\\"):
            pending = (pending[0], pending[1][:-1].rstrip())
            continue
        out.append(pending)
        pending = None
    if pending is not None:
        out.append(pending)
    return out


@functools.cache
def job_module(script: str) -> str | None:
    """The module whose main() a jobs/*.py entrypoint runs (`from c2s.x import main`)."""
    found = re.search(r"^from (c2s[\w.]*) import main\b", (REPO / script).read_text(), re.M)
    return found.group(1) if found else None


def _words(text: str) -> list[str]:
    words = shlex.split(text, comments=True)
    for i, word in enumerate(words):
        if word in SHELL_STOP:
            return words[:i]
    return words


def parse_command(file: str, number: int, text: str) -> DocCommand | None:
    """A DocCommand for a `c2s ...` or `... python jobs/X.py ...` line; None for any other line."""
    if "c2s" not in text and "jobs/" not in text:
        return None
    try:
        words = _words(text)
    except ValueError as err:  # unbalanced quotes: reported where the command is
        return DocCommand(file, number, text, f"<cannot split the line: {err}>", ())
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):  # VAR=value c2s ...
        words = words[1:]
    if words and words[0] == "c2s":
        return DocCommand(file, number, text, None, tuple(words[1:]))
    job = JOB.search(text)
    if job:
        script = job.group(1)
        if not (REPO / script).is_file():
            return DocCommand(file, number, text, f"<missing {script}>", ())
        return DocCommand(file, number, text, job_module(script) or f"<no main in {script}>",
                          tuple(_words(job.group(2) or "")))
    return None


def extract_commands(path: Path) -> list[DocCommand]:
    rel = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    commands = []
    for block in shell_blocks(path):
        for number, text in logical_lines(block):
            command = parse_command(rel, number, text)
            if command is not None:
                commands.append(command)
    return commands


def all_commands() -> list[DocCommand]:
    return [command for path in DOC_FILES for command in extract_commands(path)]


# --- checks ----------------------------------------------------------------------------------------------

def resolve_module(command: DocCommand) -> tuple[str, list[str]]:
    """The module and the arguments its main() receives; raises DocCommandError for an unknown command."""
    from c2s.cli import COMMANDS

    argv = [word for word in command.argv if word != "--debug"]
    if command.module is not None:
        if command.module.startswith("<"):
            raise DocCommandError(f"{command.where()}\n  {command.module[1:-1]}")
        return command.module, argv
    for words, (module_name, _) in sorted(COMMANDS.items(), key=lambda kv: -len(kv[0])):
        if tuple(argv[: len(words)]) == words:
            return module_name, argv[len(words):]
    known = ", ".join(" ".join(words) for words in COMMANDS)
    raise DocCommandError(f"{command.where()}\n  unknown command {' '.join(argv[:2])!r}; c2s has: {known}")


def parse_arguments(module: Any, argv: list[str]) -> argparse.Namespace | None:
    """The module's own parsing of ``argv``: its ``parse_args(argv)`` when it has one (with its checks
    after argparse), else its ``main(argv)`` stopped right after ``ArgumentParser.parse_args``. None for
    ``--help``. Raises DocCommandError with argparse's message."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if callable(getattr(module, "parse_args", None)):
                return module.parse_args(argv)
            with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop):
                module.main(argv)
    except _Parsed as parsed:
        return parsed.namespace
    except SystemExit as exit_:
        if exit_.code in (0, None) and ("--help" in argv or "-h" in argv):
            return None
        message = err.getvalue().strip().splitlines()
        raise DocCommandError(message[-1] if message else f"exit {exit_.code}") from None
    raise DocCommandError(f"{module.__name__}.main() returned without parsing its arguments")


@functools.cache
def repo_configs() -> dict[str, Any]:
    """Every config under c2s/configs (not _base_), loaded once."""
    from c2s.config import CONFIG_DIR, load_config

    names = sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.py")
                   if "_base_" not in p.parts and not p.name.startswith("_"))
    return {name: load_config(name) for name in names}


def check_overrides(cfg: Any, overrides: list[str]) -> None:
    """Apply ``key=value`` overrides to ``cfg``; a placeholder value (N, ROOT) checks the key alone."""
    from c2s.config import ConfigError, apply_overrides, flatten

    flat = flatten(cfg)
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"override {text!r} must look like key=value")
        key, value = text.split("=", 1)
        if is_placeholder(value):
            apply_overrides(cfg, {key.strip(): flat.get(key.strip())})
        else:
            apply_overrides(cfg, [text])


def check_config(config: Any, overrides: list[str]) -> None:
    """The named config exists and takes the overrides; no (or a placeholder) config: one of the repo's does."""
    from c2s.config import ConfigError, load_config

    if isinstance(config, str) and not is_placeholder(config):
        check_overrides(load_config(config), overrides)
        return
    if not overrides:
        return
    errors = []
    for cfg in repo_configs().values():
        try:
            check_overrides(cfg, overrides)
            return
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(f"no config under c2s/configs takes {overrides}: {errors[0]}")


def check_namespace(namespace: argparse.Namespace) -> None:
    """What the parsed arguments name: a config and its overrides, a sweep spec and its edits, a dataset."""
    args = vars(namespace)
    overrides = [text for text in args.get("overrides") or [] if isinstance(text, str)]
    if "spec" in args and not is_placeholder(args["spec"]):
        from c2s.sweep.spec import load_spec

        with contextlib.chdir(REPO):
            load_spec(args["spec"], list(args.get("updates") or []))
    check_config(args.get("config"), overrides)
    dataset = args.get("dataset")
    if isinstance(dataset, str) and not is_placeholder(dataset) and "/" not in dataset \
            and not dataset.endswith((".yaml", ".yml")):
        from c2s.data.catalog import get_dataset_info

        get_dataset_info(dataset)


def check_command(command: DocCommand) -> None:
    """Raise DocCommandError naming the file, the line and the command when anything it names is wrong."""
    argv = [word for word in command.argv if word != "--debug"]
    if command.module is None and (not argv or argv[0] in ("-h", "--help", "help")):
        return
    module_name, rest = resolve_module(command)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise DocCommandError(f"{command.where()}\n  cannot import {module_name}: {err}") from None
    try:
        namespace = parse_arguments(module, rest)
        if namespace is not None:
            check_namespace(namespace)
    except DocCommandError as err:
        raise DocCommandError(f"{command.where()}\n  {err}") from None
    except Exception as err:  # a ConfigError, SpecError, ValueError: what the command would refuse
        raise DocCommandError(f"{command.where()}\n  {type(err).__name__}: {err}") from None


# --- the tests -------------------------------------------------------------------------------------------

COMMANDS = all_commands()


def test_the_docs_show_commands():
    files = {command.file for command in COMMANDS}
    assert "README.md" in files and len(COMMANDS) >= 20, sorted(files)
    assert any(command.module for command in COMMANDS), "no `python jobs/X.py` command found"


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.file}:{c.line}" for c in COMMANDS])
def test_doc_command(command):
    try:
        check_command(command)
    except DocCommandError as err:
        pytest.fail(str(err), pytrace=False)


WRONG = """# A page with made-up commands

```bash
c2s trian toy_c2s
c2s train toy_c2s loss.tua=0.05
c2s train no_such_config
c2s train toy_c2s bank.size=many
c2s predict RUN photos/ --clases "a,b"
c2s export RUN --format tflite --out student.tflite
c2s export RUN --format onnx --out student.onnx --opset 17
c2s eval RUN evaluation.mood=whole
c2s data check ROOT --dataset voc13
c2s sweep sweeps/tau.yaml --set overrides.loss.tauu=0.1
c2s sweep sweeps/no_such_spec.yaml
```

```
$ c2s report SWEEP_DIR --which worst
output lines are not commands: c2s trian
```

```bash
ray job submit --working-dir . -- python jobs/train.py toy_c2s loss.tua=0.05
```
"""


def test_a_wrong_command_is_caught(tmp_path):
    page = tmp_path / "wrong.md"
    page.write_text(WRONG)
    commands = extract_commands(page)
    assert len(commands) == 13, [c.text for c in commands]
    for command in commands:
        with pytest.raises(DocCommandError) as caught:
            check_command(command)
        message = str(caught.value)
        assert message.startswith(f"wrong.md:{command.line}: {command.text}\n"), message


def test_placeholders_and_a_right_command_pass(tmp_path):
    page = tmp_path / "right.md"
    page.write_text("```bash\nc2s train toy_c2s train.iters=N data.root=ROOT --run-dir RUN   # a comment\n"
                    "c2s eval RUN evaluation.mode=whole\nc2s --help\n```\n")
    commands = extract_commands(page)
    assert [c.line for c in commands] == [2, 3, 4]
    for command in commands:
        check_command(command)


# --- links -----------------------------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")
CONFIG_LINK = re.compile(r"\b(docs/[\w./-]+\.md)(?:#([\w-]+))?")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    found, fenced = set(), False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#{1,6}\s+(.*)", line)):
            found.add(slug(heading.group(1)))
    return frozenset(found)


def link_problem(source: Path, target: str) -> str | None:
    file, _, anchor = target.partition("#")
    path = (source.parent / file).resolve() if file else source
    if not path.exists():
        return f"{target}: {path.relative_to(REPO) if path.is_relative_to(REPO) else path} does not exist"
    if anchor and path.suffix == ".md" and anchor not in anchors(path):
        return f"{target}: no heading with anchor #{anchor} in {path.name}"
    return None


def test_doc_and_config_links_resolve():
    problems = []
    for source in DOC_FILES:
        for number, line in enumerate(source.read_text().splitlines(), start=1):
            for target in LINK.findall(line):
                if target.startswith(("http://", "https://", "mailto:")):
                    continue
                if problem := link_problem(source, target):
                    problems.append(f"{source.relative_to(REPO)}:{number}: {problem}")
    for source in sorted((REPO / "c2s" / "configs").rglob("*.py")):
        for number, line in enumerate(source.read_text().splitlines(), start=1):
            for file, anchor in CONFIG_LINK.findall(line):
                target = file + (f"#{anchor}" if anchor else "")
                if problem := link_problem(REPO / "README.md", target):  # relative to the repo root
                    problems.append(f"{source.relative_to(REPO)}:{number}: {problem}")
    assert not problems, "\n".join(problems)
