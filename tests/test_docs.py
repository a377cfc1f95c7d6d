"""The README and docs/ as a newcomer reads them: every relative link lands on a file (and on a #heading in
it), the README stays short and names the command CI runs, its config groups table lists what conf/ holds."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 300
# conf/ folders that are not config groups a user picks, each with the reason
NOT_GROUPS = {
    "hydra": "Hydra's own settings (run and sweep folders, job logging)",
    "shared": "what every dataset option includes (/shared/in_memory_data), not an option itself",
}

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def pages() -> list[Path]:
    docs = sorted((ROOT / "docs").glob("*.md"))
    return [README, *docs]


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `# comment` in a bash block is no heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces as hyphens."""
    text = LINK.sub(r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The #anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    found, counts = set(), {}
    for line in prose(page.read_text()):
        if m := HEADING.match(line):
            base = slug(m.group(2))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(f"{base}-{n}" if n else base)
    return found


def links(page: Path) -> list[str]:
    text = "\n".join(re.sub(r"`[^`]*`", "", line) for line in prose(page.read_text()))
    return [m.group(2) for m in LINK.finditer(text)]


def broken_links(page: Path) -> list[str]:
    """Each relative link of a page that names no file, or a #heading its file does not have."""
    broken = []
    for target in links(page):
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = unquote(target).partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    assert not (broken := broken_links(page)), "\n".join(broken)


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    other = "# Other page\n\n## How a run ends\n\n```bash\n# not a heading\n```\n\n## How a run ends\n"
    (tmp_path / "other.md").write_text(other)
    page = tmp_path / "page.md"
    page.write_text(
        "[fine](other.md#how-a-run-ends) [again](other.md#how-a-run-ends-1) [gone](missing.md) "
        "[wrong](other.md#not-a-heading) "
        "[web](https://example.org) `[code](nowhere.md)` [here](#top)\n\n# Top\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#not-a-heading: no heading #not-a-heading in other.md",
    ]


def test_slugs_are_githubs():
    assert slug("Speed: the time-to-accuracy recipe") == "speed-the-time-to-accuracy-recipe"
    assert slug("Sweeps, launchers and reports") == "sweeps-launchers-and-reports"
    assert slug("`make bench` and [the race](x.md)") == "make-bench-and-the-race"


def test_the_readme_fits_in_300_lines():
    assert len(README.read_text().splitlines()) <= MAX_README_LINES


def test_the_readme_names_the_command_ci_runs():
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    runs_tests = re.compile(r"\s*(make|\S*pytest|\S*python\S* -m pytest)\s")
    commands = [line.strip() for line in script if runs_tests.match(line)]
    assert commands, "no test command found in .ci/run"
    readme = README.read_text()
    for command in commands:  # the whole command: `make test` is not `make test-all`
        named = re.search(rf"(?<![\w-]){re.escape(command)}(?![\w-])", readme)
        assert named, f"README.md does not name `{command}`, the command .ci/run runs"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / unquote(t).partition("#")[0]).resolve() for t in links(README)}
    assert [p.name for p in pages()[1:] if p.resolve() not in linked] == []


def group_table() -> dict[str, set[str]]:
    """The README's Config groups table: group → the options it lists (the parenthesized notes left out)."""
    section = README.read_text().split("\n## Config groups\n", 1)[1].split("\n## ", 1)[0]
    table = {}
    for row in re.findall(r"^\| `(\w+)` \|.*\| (.+) \|$", section, re.M):
        group, options = row
        while re.search(r"\([^()]*\)", options):
            options = re.sub(r"\([^()]*\)", "", options)
        table[group] = set(re.findall(r"`(\w+)`", options))
    return table


def test_the_readme_lists_every_config_group_and_option():
    conf = {
        d.name: {p.stem for p in d.glob("*.yaml")}
        for d in (ROOT / "conf").iterdir()
        if d.is_dir() and d.name not in NOT_GROUPS
    }
    assert group_table() == conf
