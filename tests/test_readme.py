"""The README does not drift from the code: its commands exist, its configs exist and load."""

from __future__ import annotations

import re
from pathlib import Path

from lorasweep.cli import _parser
from lorasweep.config import load_config

README = Path("README.md").read_text()


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)
    return [
        line.split("#")[0].strip() for b in blocks for line in b.splitlines() if line.startswith("lorasweep ")
    ]


def test_every_readme_subcommand_exists():
    sub = next(a for a in _parser()._actions if a.dest == "command")
    used = {c.split()[1] for c in readme_commands()} | {
        c.split("&&")[1].split()[1] for c in readme_commands() if "&&" in c
    }
    assert used and used <= set(sub.choices), used - set(sub.choices)


def test_every_config_the_readme_names_loads_and_is_headed_by_its_own_command():
    names = sorted(set(re.findall(r"configs/[\w.-]+\.yaml", README)))
    assert "configs/demo.yaml" in names
    for name in names:
        load_config(name)  # schema drift (a renamed or removed key) raises UserError naming the key
        head = "\n".join(Path(name).read_text().splitlines()[:4])
        # the command that runs this file, not a copied header that names another config
        assert re.search(rf"lorasweep (?:run|plan) +{re.escape(name)}\b", head), name


def test_quick_start_is_two_make_targets():
    quick = README.split("## Quick start")[1].split("##")[0]
    assert re.findall(r"^make (\w+)", quick, re.MULTILINE) == ["demo", "test"]
    makefile = Path("Makefile").read_text()
    assert "demo:" in makefile and "test:" in makefile and "make test" in Path(".ci/run").read_text()


def test_every_file_the_file_map_names_exists():
    block = README.split("## File map")[1].split("```")[1]
    stack: list[tuple[int, str]] = []  # (indent, folder) of the enclosing folders
    named = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        stack = [(i, d) for i, d in stack if i < indent]
        names = [n.strip() for n in re.split(r"\s{2,}", line.strip())[0].split(",")]
        parent = "".join(d for _, d in stack)
        if parent.startswith("src/lorasweep/") or names[0] == "src/lorasweep/":
            named += [parent + n for n in names]
        if names[0].endswith("/"):
            stack.append((indent, names[0]))
    assert len(named) > 40
    missing = [n for n in named if not Path(n).exists()]
    assert not missing, missing
