"""The engine must never pull in the UI, and importing it must stay cheap."""

import subprocess
import sys

from support import REPO


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    return set(out.split())


def test_engine_imports_no_ui():
    mods = _modules_after(
        "import engine, engine.search, engine.encoding.torch_cnn, engine.storage.sqlite, engine.images,"
        " engine.minhash, engine.fashion"
    )
    assert "torch" in mods  # the check itself is live: the heavy modules did load
    for banned in ("textual", "rich", "tui", "rich_pixels"):
        assert banned not in mods, f"engine imported {banned}"


def test_engine_package_import_is_light():
    mods = _modules_after("import engine\nfrom engine import looks_like_image_name")
    assert "torch" not in mods and "datasketch" not in mods


def test_searching_stored_codes_needs_no_torch(sample_copy):
    """Opening an index and answering a query that is an indexed file loads no CNN."""
    query = sorted(sample_copy.glob("bag/*.png"))[0]
    mods = _modules_after(
        "from engine import ImageSimilaritySearch\n"
        f"s = ImageSimilaritySearch({str(sample_copy)!r})\n"
        f"assert len(s.find_similar_images({str(query)!r}, 5)) == 5"
    )
    assert "engine.search" in mods and "torch" not in mods and "onnxruntime" not in mods


def test_the_search_command_on_an_indexed_file_needs_no_torch(sample_copy):
    """`lookalike search` of an indexed file, words and known copies included, loads no
    CNN and no datasketch: 0.3 s for the whole process (2.6 s when reading the known
    copies imported the self-join, and torch with it)."""
    from engine import ImageSimilaritySearch

    with ImageSimilaritySearch(sample_copy) as search:
        search.index()
    query = sorted(sample_copy.glob("bag/*.png"))[0]
    mods = _modules_after(
        "from tui.cli import main\n"
        f"assert main(['search', '--in', {str(sample_copy)!r}, {str(query)!r}]) == 0"
    )
    assert "engine.triage.known" in mods  # the check is live: the words were read
    for heavy in ("torch", "datasketch", "onnxruntime", "openvino"):
        assert heavy not in mods, heavy


def test_a_new_image_needs_no_torch_once_exported(sample_copy, tmp_path):
    """With ONNX Runtime as the way to run (here forced), a query outside the index is
    encoded without importing torch once the model has been exported."""
    import os
    import shutil

    from engine.encoding.torch_cnn import DeepImageEncoder

    DeepImageEncoder(backbone="efficientnet-lite0", device="cpu", runtime="onnx")  # exports
    outside = tmp_path / "new.png"
    shutil.copy(sorted(sample_copy.glob("bag/*.png"))[0], outside)
    code = (
        "import os\n"
        "os.environ['LOOKALIKE_RUNTIME'] = 'onnx'\n"
        "from engine import ImageSimilaritySearch\n"
        f"s = ImageSimilaritySearch({str(sample_copy)!r})\n"
        f"r = s.search({str(outside)!r}, 3)\n"
        "assert not r.query_from_index and r.matches[0].score > 0.999, r\n"
        "assert s.encoder.describe().endswith('onnxruntime)')\n"
    )
    assert os.environ.get("LOOKALIKE_PRECISION") == "fp32"
    mods = _modules_after(code)
    assert "onnxruntime" in mods and "torch" not in mods


def test_every_user_facing_error_of_the_engine_lives_in_errors():
    """One place holds the errors a user may see (their one-line messages): any class
    deriving from LookalikeError is defined in engine/errors.py."""
    import ast

    bases = {"LookalikeError"}
    defined: dict[str, str] = {}
    for path in sorted((REPO / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                defined[node.name] = str(path.relative_to(REPO))
                if names & bases or node.name == "LookalikeError":
                    bases.add(node.name)
    errors = {name: where for name, where in defined.items() if name in bases}
    assert len(errors) > 10  # the check itself is live
    assert {w for w in errors.values()} == {"engine/errors.py"}, errors


def test_no_function_over_80_lines_and_no_module_over_450():
    """A function a reader can hold in view, a module a reader can read through: longer
    ones are split into named steps and parts."""
    import ast

    long = []
    for path in sorted([*(REPO / "engine").rglob("*.py"), *(REPO / "tui").rglob("*.py")]):
        text = path.read_text()
        if text.count("\n") > 450:
            long.append(str(path.relative_to(REPO)))
        for node in ast.walk(ast.parse(text)):
            is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            if is_function and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{path.relative_to(REPO)}:{node.name}")
    assert not long, long


def test_the_app_tells_its_screens_by_messages():
    """The app starts screens and posts them messages; each screen owns its widgets."""
    import re

    text = (REPO / "tui" / "app.py").read_text()
    uses = re.findall(r"search_view\.(\w+)", text)
    assert uses and set(uses) == {"post_message"}, uses
    assert not re.search(r"query_one\(", text)


def test_no_import_circle_in_the_engine():
    """Modules of engine/ import each other one way only (at import time; an import
    inside a function or for the type checker is not one)."""
    import ast

    mods = {}
    for path in (REPO / "engine").rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.parse(path.read_text()).body:
            if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("engine")):
                continue
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(mods)
            graph[m] |= subs - {m}
            if len(subs) < len(node.names) and node.module in mods and node.module != m:
                graph[m].add(node.module)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                if nxt == goal:
                    return True
                seen.add(nxt)
                todo.append(nxt)
        return False

    assert sum(map(len, graph.values())) > 50  # the check itself is live
    circles = sorted(m for m in graph if reaches(m, m))
    assert not circles, circles
