"""How the reports package is put together: the HTML page's templates ship with the package and
render with autoescape on and no undefined name; each recommended action has its outcome rule."""

from __future__ import annotations

import fnmatch
import pathlib
import tomllib

import jinja2
import pytest

from monitor.reports.adherence import RECOMMENDATION_OUTCOMES, RECOMMENDATIONS
from monitor.reports.html import _environment

ROOT = pathlib.Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "monitor" / "reports" / "templates"


def test_every_template_is_package_data() -> None:
    """The wheel takes `reports/templates/*` only: no subdirectory, every file matched."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["monitor"]
    files = sorted(TEMPLATES.iterdir())
    assert any(f.name == "adherence.html.j2" for f in files)
    for path in files:
        assert path.is_file(), f"{path.name}: a subdirectory is not shipped"
        relative = path.relative_to(ROOT / "monitor").as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


def test_the_environment_is_built_once_escapes_and_refuses_undefined_names() -> None:
    environment = _environment()
    assert _environment() is environment
    template = environment.from_string("{{ value }}")
    assert template.render(value='<b>"it\'s"</b>') == "&lt;b&gt;&#34;it&#39;s&#34;&lt;/b&gt;"
    # a page without its charts is an error, not a page with holes
    with pytest.raises(jinja2.UndefinedError):
        environment.get_template("adherence.html.j2").render(result={"period": {}})


def test_every_recommendation_has_its_outcome_rule() -> None:
    assert set(RECOMMENDATION_OUTCOMES) == set(RECOMMENDATIONS)
