"""The package's documentation cannot drift from the program:

- the man page (packaging/debian/nodeagent.1) is compared with the argparse
  parser: every subcommand has a synopsis line and a subsection, every option
  of every (sub)parser is in its command's synopsis line and described, as a
  tagged paragraph in its command's subsection or under OPTIONS, and the
  synopsis names no option the parser lacks. Options hidden from --help
  (help=argparse.SUPPRESS) are test hooks and left out. An uppercase word in
  a documented option stands for a family (`--collector.NAME` documents
  `--collector.cpu`);
- the README's ```console blocks are run: `$ nodeagent ...` lines through the
  CLI, `$ cat FILE` lines define FILE with the lines that follow; what each
  prints must be what the README shows (NODEAGENT_UPDATE_GOLDEN=1 rewrites
  the README);
- the files the .deb ships under /usr/share/doc/nodeagent are listed in
  debian/ and staged by build-deb.sh (test_deb.py lists the built .deb).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pkgtools import PACKAGING, REPO

from nodeagent import __version__
from nodeagent.cli import build_parser
from nodeagent.cli import main as cli_main

MAN = PACKAGING / "debian" / "nodeagent.1"
README = REPO / "README.md"
UPDATE = os.environ.get("NODEAGENT_UPDATE_GOLDEN") == "1"

# ---- the man page ----------------------------------------------------------------------
OPTION = re.compile(r"(?<![\w/.-])--?[A-Za-z0-9][A-Za-z0-9_.-]*")
PLACEHOLDER = re.compile(r"[A-Z]{2,}[A-Z0-9_]*")


def plain(roff: str) -> str:
    """roff source as text: font escapes dropped, `\\-` as `-`."""
    return re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", roff).replace("\\-", "-")


def options_in(text: str) -> set[str]:
    return {m.group().rstrip(".-") for m in OPTION.finditer(plain(text))}


def split_on(roff: str, macro: str) -> dict[str, str]:
    """Body of each `.SH NAME` (or `.SS NAME`) of the source, by name."""
    parts: dict[str, str] = {}
    name = None
    for line in roff.splitlines():
        if line.startswith(macro + " "):
            name = plain(line[len(macro) + 1:]).strip().strip('"')
            parts[name] = ""
        elif name is not None:
            parts[name] += line + "\n"
    return parts


def tagged_options(body: str) -> set[str]:
    """Options named in the tag line of each `.TP` paragraph."""
    lines = body.splitlines()
    return {opt for i, line in enumerate(lines[:-1]) if line.strip() == ".TP" for opt in options_in(lines[i + 1])}


def synopsis_lines(synopsis: str) -> dict[str, set[str]]:
    """Options on each synopsis line, by command ("" for the daemon's lines)."""
    out: dict[str, set[str]] = {}
    for chunk in synopsis.split("\n.br\n"):
        words = plain(" ".join(line.split(" ", 1)[-1] for line in chunk.splitlines())).replace('"', " ").split()
        assert words and words[0] == "nodeagent", chunk
        command = []
        for w in words[1:]:
            if w.startswith("-") or w.startswith("["):
                break
            command.append(w)
        out.setdefault(" ".join(command), set()).update(options_in(chunk))
    return out


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[str, argparse.ArgumentParser]]:
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


def parser_options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        opt
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and action.help != argparse.SUPPRESS
        for opt in action.option_strings
    }


def documented(option: str, names: set[str]) -> bool:
    if option in names:
        return True
    for name in names:
        if PLACEHOLDER.search(name):
            pattern = "[a-z0-9_-]+".join(re.escape(part) for part in PLACEHOLDER.split(name))
            if re.fullmatch(pattern, option):
                return True
    return False


def man_gaps(parser: argparse.ArgumentParser, roff: str) -> list[str]:
    """What the man page lacks or has too much, compared with the parser."""
    sections = split_on(roff, ".SH")
    synopsis = synopsis_lines(sections["SYNOPSIS"])
    commands = split_on(sections.get("COMMANDS", ""), ".SS")
    global_tags = tagged_options(sections.get("OPTIONS", ""))
    gaps = []
    for command, p in walk(parser):
        options = parser_options(p)
        if command and command not in commands:
            gaps.append(f"{command}: no .SS subsection under COMMANDS")
        if command not in synopsis:
            gaps.append(f"{command or 'nodeagent'}: no synopsis line")
            continue
        # the daemon's options: the `run` subsection describes them too
        described = global_tags | tagged_options(commands.get(command or "run", ""))
        in_synopsis = synopsis[command] if command else set().union(
            *(v for k, v in synopsis.items() if k == ""))
        for option in sorted(options):
            if not documented(option, in_synopsis):
                gaps.append(f"{command or 'nodeagent'}: {option} not in its synopsis line")
            if not documented(option, described):
                gaps.append(f"{command or 'nodeagent'}: {option} not described (a .TP tag in its subsection "
                            "or under OPTIONS)")
        for option in sorted(in_synopsis):
            if not PLACEHOLDER.search(option) and option not in options:
                gaps.append(f"{command or 'nodeagent'}: the synopsis names {option}, which the parser lacks")
    known = {c for c, _ in walk(parser)}
    gaps += [f"{c}: synopsis line of a command the parser lacks" for c in synopsis if c not in known]
    return gaps


def test_man_page_covers_every_subcommand_and_option() -> None:
    parser = build_parser()
    commands = [c for c, _ in walk(parser) if c]
    # the walk reaches the subcommands (a walk that found nothing would pass)
    assert {"run", "check", "install", "uninstall", "dashboard", "alarms", "cost"} <= set(commands)
    assert "--no-start" in parser_options(dict(walk(parser))["install"])
    assert man_gaps(parser, MAN.read_text(encoding="utf-8")) == []


def test_man_page_check_finds_what_is_missing() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    extra = sub.add_parser("frobnicate")
    extra.add_argument("--widget")
    dict(walk(parser))["cost"].add_argument("--currency")
    dict(walk(parser))["cost"].add_argument("--hidden-hook", help=argparse.SUPPRESS)
    roff = MAN.read_text(encoding="utf-8").replace(".RB [ \\-\\-no\\-start ]\n", "")
    gaps = man_gaps(parser, roff)
    assert "frobnicate: no .SS subsection under COMMANDS" in gaps
    assert "frobnicate: no synopsis line" in gaps
    assert "cost: --currency not in its synopsis line" in gaps
    assert any(g.startswith("cost: --currency not described") for g in gaps)
    assert "install: --no-start not in its synopsis line" in gaps
    assert not any("--hidden-hook" in g for g in gaps)
    assert len(gaps) == 5, gaps


def test_option_families_are_matched_by_placeholder() -> None:
    assert documented("--collector.cpu", {"--collector.NAME"})
    assert documented("--no-collector.hwmon", {"--no-collector.NAME"})
    assert not documented("--collector.cpu", {"--collector"})
    assert not documented("--web.listen-address", {"--collector.NAME"})


def test_man_page_version_is_the_programs() -> None:
    first = MAN.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(".TH NODEAGENT 1 ") and f'"nodeagent {__version__}"' in first


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff not installed")
def test_man_page_renders_without_warnings() -> None:
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


# ---- README figures --------------------------------------------------------------------
CONSOLE = re.compile(r"^```console\n(.*?)^```$", re.S | re.M)


def replay(block: str, cwd: Path) -> str:
    """The console block as the commands print it now."""
    lines = block.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        prompt = lines[i]
        assert prompt.startswith("$ "), f"README console block: expected a `$ ` line, got {prompt!r}"
        argv = shlex.split(prompt[2:])
        i += 1
        shown: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        if argv[0] == "cat" and len(argv) == 2:
            (cwd / argv[1]).write_text("".join(shown), encoding="utf-8")
            printed = "".join(shown)
        elif argv[0] == "nodeagent":
            buf = io.StringIO()
            here = os.getcwd()
            os.chdir(cwd)  # relative paths in the block are the block's files
            try:
                with contextlib.redirect_stdout(buf):
                    rc = cli_main(argv[1:])
            finally:
                os.chdir(here)
            assert rc == 0, f"README: `{prompt.strip()}` exited {rc}"
            printed = buf.getvalue()
        else:
            raise AssertionError(f"README console block: no way to run {prompt.strip()!r} (only nodeagent and cat)")
        out.append(prompt + printed)
    return "".join(out)


def test_readme_command_output_is_what_the_commands_print(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    blocks = CONSOLE.findall(text)
    # the cost figures, at least, come from a block
    assert any("$ nodeagent cost " in b for b in blocks), "README: no console block runs `nodeagent cost`"
    current = CONSOLE.sub(lambda m: "```console\n" + replay(m.group(1), tmp_path) + "```", text)
    if UPDATE:
        README.write_text(current, encoding="utf-8")
        return
    for was, now in zip(blocks, CONSOLE.findall(current)):
        assert was == now, "README output differs from what the command prints (NODEAGENT_UPDATE_GOLDEN=1)"


def test_readme_replay_sees_a_changed_figure(tmp_path: Path) -> None:
    block = "$ cat empty.yaml\n$ nodeagent cost --nodes 2 --gpus-per-node 8 --config empty.yaml\n"
    good = replay(block, tmp_path)
    assert "custom metrics:" in good
    tampered = good.replace("custom metrics:", "custom metrics: 1 +", 1)
    assert replay(tampered, tmp_path) == good != tampered


# ---- /usr/share/doc/nodeagent ------------------------------------------------------------
def test_package_docs_are_listed_and_staged() -> None:
    """debian/nodeagent.docs and .examples name repository files that
    build-deb.sh copies into the build tree (the .deb's listing: test_deb.py)."""
    listed = []
    for name in ("nodeagent.docs", "nodeagent.examples"):
        listed += (PACKAGING / "debian" / name).read_text(encoding="utf-8").split()
    assert set(listed) == {"docs/metrics.md", "config/nodeagent.example.yaml", "config/grafana", "config/prometheus"}
    build = (PACKAGING / "build-deb.sh").read_text(encoding="utf-8")
    staged = re.search(r"-cf - ([^|]*)\|", build.replace("\\\n", " "))
    assert staged is not None
    for path in listed:
        assert (REPO / path).exists(), path
        assert path in staged.group(1).split(), f"build-deb.sh does not stage {path}"
    assert list((REPO / "config/grafana").glob("*.json"))
