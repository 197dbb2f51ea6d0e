"""Lint of every master in solutions/ (book/instructors.md): what nbgrader does not check but a
fair grade needs. No notebook is executed."""

import ast
import builtins
import re
import symtable

import nbformat
import pytest
from notebooks import MASTERS, ROOT, ids

from vaecourse.grading.verdict import hidden_tests

MARKERS = {"SOLUTION": "### {} SOLUTION", "HIDDEN TESTS": "### {} HIDDEN TESTS"}
STDERR_HINT = "tests must not write to stderr (nbgrader scores stderr output 0): use assert"


def nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def graded_code_cells(nb):
    """The autograded code cells: graded, not an answer."""
    return [c for c in nb.cells if c.cell_type == "code"
            and nbgrader(c).get("grade") and not nbgrader(c).get("solution")]


def without_hidden_tests(source):
    """The visible part of a test cell, as the release shows it."""
    return re.sub(r"[^\n]*### BEGIN HIDDEN TESTS[\s\S]*?### END HIDDEN TESTS[^\n]*\n?", "", source)


def marker_errors(source, kind):
    """Unbalanced or nested BEGIN/END markers of one kind in a cell."""
    begin, end = MARKERS[kind].format("BEGIN"), MARKERS[kind].format("END")
    depth, errors = 0, []
    for line in source.splitlines():
        if begin in line:
            depth += 1
            if depth > 1:
                errors.append(f"nested '{begin}'")
        elif end in line:
            depth -= 1
            if depth < 0:
                errors.append(f"'{end}' without '{begin}'")
                depth = 0
    return errors + ([f"'{begin}' without '{end}'"] if depth else [])


def bare_last_expression(source):
    """The last statement when it is an expression other than a call (nbgrader reads a value
    that ends a test cell as partial credit, so `x == 1` there gives full marks when False)."""
    body = ast.parse(source).body
    last = body[-1] if body else None
    if isinstance(last, ast.Expr) and not isinstance(last.value, ast.Call):
        return ast.unparse(last)
    return None


def stderr_writes(source):
    """The constructs of a test that write to stderr."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "stderr":
            found.append("sys.stderr")
        elif ((isinstance(node, ast.Attribute) and node.attr == "warn")
              or (isinstance(node, ast.Name) and node.id in ("warn", "logging"))):
            found.append(ast.unparse(node))
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"
              and any(k.arg == "file" for k in node.keywords)):
            found.append("print(..., file=...)")
    return found


@pytest.fixture(params=MASTERS, ids=ids(MASTERS))
def master(request):
    return request.param.relative_to(ROOT), nbformat.read(request.param, as_version=4)


def test_there_are_masters():
    assert MASTERS, "solutions/ holds no master notebook"


def test_grade_ids_are_unique(master):
    path, nb = master
    seen = [nbgrader(c)["grade_id"] for c in nb.cells if "grade_id" in nbgrader(c)]
    repeated = sorted({g for g in seen if seen.count(g) > 1})
    assert not repeated, f"{path}: grade ids used more than once: {repeated}"


@pytest.mark.parametrize("kind", sorted(MARKERS))
def test_markers_are_balanced(master, kind):
    path, nb = master
    errors = [f"cell '{nbgrader(c).get('grade_id', i)}': {e}" for i, c in enumerate(nb.cells)
              for e in marker_errors(c.source, kind)]
    assert not errors, f"{path}: {errors}"


def test_test_cells_end_with_a_statement(master):
    path, nb = master
    for cell in graded_code_cells(nb):
        for version in (cell.source, without_hidden_tests(cell.source)):
            last = bare_last_expression(version)
            assert last is None, (f"{path}, cell '{nbgrader(cell)['grade_id']}' ends with the "
                                  f"expression `{last}`: nbgrader would read its value as the "
                                  "grade; make it an assert")


def test_tests_do_not_write_to_stderr(master):
    path, nb = master
    for cell in graded_code_cells(nb):
        found = stderr_writes(cell.source)
        assert not found, f"{path}, cell '{nbgrader(cell)['grade_id']}': {found}: {STDERR_HINT}"


def test_every_grade_cell_declares_points(master):
    path, nb = master
    for cell in (c for c in nb.cells if nbgrader(c).get("grade")):
        value = nbgrader(cell).get("points")
        assert isinstance(value, int | float) and value > 0, (
            f"{path}, cell '{nbgrader(cell)['grade_id']}': points should be a positive number, "
            f"got {value!r}")


def test_the_intro_states_the_total(master):
    path, nb = master
    intro = next(c for c in nb.cells if c.cell_type == "markdown")
    stated = re.findall(r"Total:\s*(\d+(?:\.\d+)?)\s*points", intro.source)
    total = sum(nbgrader(c)["points"] for c in nb.cells if nbgrader(c).get("grade"))
    assert len(stated) == 1, f"{path}: the intro should state 'Total: N points' once"
    assert float(stated[0]) == total, f"{path}: the intro states {stated[0]}, points sum to {total}"


def test_declared_answer_map_names_real_cells(master):
    """Every master declares which tests each answer feeds (metadata.vaecourse.answers, used by
    tests/test_grading.py): every answer cell is in it and it names only real test cells."""
    path, nb = master
    answers = nb.metadata.get("vaecourse", {}).get("answers")
    assert answers is not None, f"{path}: metadata.vaecourse.answers (answer cell -> its tests) " \
                                "is missing"
    solutions = {nbgrader(c)["grade_id"] for c in nb.cells if nbgrader(c).get("solution")}
    tests = {nbgrader(c)["grade_id"] for c in graded_code_cells(nb)}
    assert set(answers) == solutions, f"{path}: the map covers {sorted(answers)}, " \
                                      f"the answer cells are {sorted(solutions)}"
    unknown = {t for deps in answers.values() for t in deps} - tests
    assert not unknown, f"{path}: the map names cells that are not tests: {sorted(unknown)}"


KINDS = ("implement", "derive", "experiment", "written")
# Problem sets that need autograded questions of the kinds `derive` and `experiment`.
DERIVE_AND_EXPERIMENT = ("ps1_likelihood", "ps2_elbo", "ps3_vae", "ps4_colorization",
                         "ps5_forecasting", "ps6_adversarial")


def test_question_map_gives_every_question_a_kind_and_its_points(master):
    """metadata.vaecourse.questions (book/instructors.md): question -> kind, points and cells.
    Every graded cell belongs to exactly one question, a question's points are those of its
    graded cells, written questions are markdown cells graded by hand, and each of the sets
    above has autograded questions of the kinds `derive` and `experiment`."""
    path, nb = master
    questions = nb.metadata.get("vaecourse", {}).get("questions")
    assert questions is not None, f"{path}: metadata.vaecourse.questions is missing"
    cells = {nbgrader(c)["grade_id"]: c for c in nb.cells if "grade_id" in nbgrader(c)}
    graded = {g for g, c in cells.items() if nbgrader(c).get("grade")}
    claimed = [g for q in questions.values() for g in q["cells"]]
    assert sorted(claimed) == sorted(set(claimed)), f"{path}: a cell is in two questions"
    assert graded <= set(claimed), f"{path}: graded cells in no question: " \
                                   f"{sorted(graded - set(claimed))}"
    for name, q in questions.items():
        assert q["kind"] in KINDS, f"{path}, {name}: kind should be one of {KINDS}, " \
                                   f"got {q['kind']!r}"
        unknown = [g for g in q["cells"] if g not in cells]
        assert not unknown, f"{path}, {name}: no such cells {unknown}"
        points = sum(nbgrader(cells[g])["points"] for g in q["cells"] if g in graded)
        assert q["points"] == points > 0, f"{path}, {name}: declares {q['points']} points, " \
                                          f"its graded cells carry {points}"
        tests = [g for g in q["cells"] if g in graded and cells[g].cell_type == "code"]
        if q["kind"] == "written":
            assert not tests and all(cells[g].cell_type == "markdown" for g in q["cells"]), \
                f"{path}, {name}: a written question is a markdown answer graded by hand"
        else:
            assert tests, f"{path}, {name}: an autograded question ({q['kind']}) needs a test cell"
        if q["kind"] in ("derive", "experiment"):
            assert all("### BEGIN HIDDEN TESTS" in cells[g].source for g in tests), \
                f"{path}, {name}: a {q['kind']} question is checked by hidden tests"
    if path.stem in DERIVE_AND_EXPERIMENT:
        kinds = {q["kind"] for q in questions.values()}
        assert {"derive", "experiment"} <= kinds, f"{path}: needs derive and experiment " \
                                                  f"questions, has {sorted(kinds)}"


def outside_names(source):
    """The names that code reads at module level or as globals of its functions (and classes)
    without importing, defining or assigning them, builtins excepted."""
    module = symtable.symtable(source, "<check>", "exec")
    defined = {s.get_name() for s in module.get_symbols() if s.is_assigned() or s.is_imported()}
    tables, used = [module], set()
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        used |= {s.get_name() for s in table.get_symbols() if s.is_referenced()
                 and (not s.is_assigned() if table is module else s.is_global())}
    return sorted(used - defined - set(dir(builtins)))


def test_every_test_cell_is_a_probe_and_a_check(master):
    """Every test cell has hidden tests in the only form the grader decides outside the student's
    process (book/instructors.md, "Hidden tests: probe and check"): imports and functions,
    ``probe`` and ``check`` among them, ending in ``check(roundtrip(probe()))``; and the check
    uses only what the section imports and defines (it runs in the grader's process, without
    the notebook)."""
    path, nb = master
    for cell in graded_code_cells(nb):
        test = nbgrader(cell)["grade_id"]
        assert "### BEGIN HIDDEN TESTS" in cell.source, (
            f"{path}, '{test}': a test cell without hidden tests is decided by its visible asserts "
            "in the student's kernel; add a probe and a check")
        try:
            hidden = hidden_tests(test, cell.source)
        except (ValueError, SyntaxError) as err:
            pytest.fail(f"{path}: {err}")
        where = f"{path}, '{test}'"
        assert "def check(" not in hidden.probe, f"{where}: the probe must not hold the check"
        assert "def probe(" not in hidden.check, f"{where}: the check must not hold the probe"
        unknown = outside_names(hidden.check)
        assert not unknown, (f"{where}: the check uses {unknown}, which its hidden section neither "
                             "imports nor defines")


def test_instructors_table_states_the_masters_points():
    """The table of book/instructors.md states each set's total and autograded points as its
    master's question map has them."""
    table = (ROOT / "book" / "instructors.md").read_text()
    rows = dict(re.findall(r"^\| `(ps\d_\w+)` \|[^|]*\| (\d+ \(\d+ autograded\)) \|", table, re.M))
    for path in MASTERS:
        questions = nbformat.read(path, as_version=4).metadata["vaecourse"]["questions"]
        total = sum(q["points"] for q in questions.values())
        auto = sum(q["points"] for q in questions.values() if q["kind"] != "written")
        assert rows.get(path.stem) == f"{total} ({auto} autograded)", (
            f"book/instructors.md states {rows.get(path.stem)!r} for {path.stem}, its master "
            f"has {total} ({auto} autograded)")
