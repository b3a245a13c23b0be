import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "audit_dependencies", Path(__file__).resolve().parent.parent / ".ci" / "audit_dependencies.py"
)
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)


def test_a_known_vulnerability_fails_the_audit():
    report = {
        "dependencies": [
            {"name": "django", "version": "5.2.0", "vulns": [{"id": "PYSEC-1", "fix_versions": ["5.2.1"]}]},
            {"name": "stripe", "version": "16.1.0", "vulns": []},
        ]
    }
    code, lines = audit.verdict(report)
    assert code == 1
    assert lines == ["VULNERABLE django 5.2.0: PYSEC-1 (fixed in 5.2.1)"]


def test_a_clean_audit_passes():
    code, lines = audit.verdict({"dependencies": [{"name": "django", "version": "5.2.19", "vulns": []}]})
    assert code == 0
    assert "1 packages audited, no known vulnerabilities" in lines[0]


def test_an_audit_that_could_not_reach_any_database_says_so_instead_of_passing_silently():
    report = {"dependencies": [{"name": "django", "version": "5.2.19", "skip_reason": "not found on PyPI"}]}
    code, lines = audit.verdict(report)
    assert code == 0
    assert "NOT audited" in lines[0]
