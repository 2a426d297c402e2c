"""The README's Python examples run: every ```python block, each in a fresh interpreter, from a
temporary directory (the examples write there, e.g. a sweep's results/), against the same pyireg
this test imports. A block preceded by `<!-- not-run: reason -->` is skipped with that reason;
shell blocks (`pyireg ...`) are not run here."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pyireg

README = Path(__file__).resolve().parents[1] / "README.md"
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.*?)\s*-->")
MAX_NOT_RUN = 3          # skipped blocks are for what cannot run on one machine (a Ray cluster)


def code_blocks(text: str) -> list[tuple[int, str, str, str | None]]:
    """(line of the opening fence, language, code, not-run reason or None) for every fenced block.
    The not-run comment counts when it is the last non-blank line before the fence."""
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^```\s*([\w+-]*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            raise ValueError(f"README.md line {start + 1}: a code fence is never closed")
        prev = next((lines[p] for p in range(start - 1, -1, -1) if lines[p].strip()), "")
        skip = NOT_RUN.search(prev)
        blocks.append((start + 1, lang, "\n".join(lines[start + 1:j]) + "\n", skip.group(1) if skip else None))
        i = j + 1
    return blocks


BLOCKS = [b for b in code_blocks(README.read_text(encoding="utf-8")) if b[1] in ("python", "py")]


def test_the_readme_has_python_examples_and_few_skipped_ones():
    assert len(BLOCKS) >= 3, f"expected the README's Python examples, found {len(BLOCKS)} blocks"
    skipped = [(line, why) for line, _, _, why in BLOCKS if why is not None]
    assert all(why for _, why in skipped), f"a not-run comment without a reason: {skipped}"
    assert len(skipped) <= MAX_NOT_RUN, f"too many README examples are not run: {skipped}"


def test_the_block_parser_sees_fences_languages_and_not_run_comments():
    text = ("intro\n```python\nx = 1\n```\n<!-- not-run: needs a cluster -->\n\n```python\ny\n```\n"
            "```bash\npyireg sweep\n```\n")
    assert code_blocks(text) == [(2, "python", "x = 1\n", None), (7, "python", "y\n", "needs a cluster"),
                                 (10, "bash", "pyireg sweep\n", None)]
    with pytest.raises(ValueError, match="never closed"):
        code_blocks("```python\nx = 1\n")


@pytest.mark.parametrize("line, code, why", [(b[0], b[2], b[3]) for b in BLOCKS],
                         ids=[f"line{b[0]}" for b in BLOCKS])
def test_readme_python_block_runs(line, code, why, tmp_path):
    if why is not None:
        pytest.skip(f"README.md line {line}: {why}")
    # the pyireg this test imports, even when it comes from a relative PYTHONPATH (PYTHONPATH=src)
    package_root = str(Path(pyireg.__file__).resolve().parents[1])
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join([package_root, *inherited]))
    script = tmp_path / f"readme_line{line}.py"
    script.write_text(code, encoding="utf-8")
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600, check=False)
    assert r.returncode == 0, f"README.md line {line}: the example failed:\n{r.stderr[-4000:]}"
    assert "Warning" not in r.stderr, f"README.md line {line}: the example warned:\n{r.stderr[-4000:]}"


def test_every_module_the_readme_names_is_an_attribute_after_import_pyireg():
    """`pyireg.infinite`, `pyireg.deep`, ... (named in the README's tables) gave AttributeError
    after a plain `import pyireg`: each is now imported on first use, in a fresh interpreter."""
    src = Path(pyireg.__file__).parent
    named = sorted({m for m in re.findall(r"`pyireg\.([a-z_]+)", README.read_text())
                    if (src / f"{m}.py").exists() or (src / m / "__init__.py").exists()})
    assert len(named) >= 5, named
    code = ("import pyireg, sys, types; bad = [m for m in sys.argv[1:] if not isinstance(getattr(pyireg, m, None), "
            "types.ModuleType)]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code, *named], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, (named, r.stdout, r.stderr[-1000:])
