"""Audit the pinned requirements with pip-audit; fail on any known vulnerability.

pip-audit needs a vulnerability database (PyPI's JSON API or OSV). When neither can be reached
from this machine it says so plainly instead of reporting "no known vulnerabilities", and the
run continues: an audit that could not look is not a pass, but it is not a finding either.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "audit.json"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip_audit",
                "--requirement",
                str(REQUIREMENTS),
                "--format",
                "json",
                "--output",
                str(report_path),
                "--progress-spinner",
                "off",
            ],
            capture_output=True,
            text=True,
        )
        if not report_path.exists():
            print(f"pip-audit could not run:\n{run.stderr[-2000:]}")
            return 1
        report = json.loads(report_path.read_text())
    code, lines = verdict(report)
    print("\n".join(lines))
    return code


def verdict(report: dict) -> tuple[int, list[str]]:
    """The exit code and what to print for a pip-audit JSON report."""
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    lines = []
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed release yet"
            lines.append(f"VULNERABLE {dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixes})")
    if vulnerable:
        return 1, lines
    if dependencies and not audited:
        return 0, [
            f"pip-audit: no vulnerability database reachable from this machine; {len(dependencies)} pinned packages "
            "NOT audited (run .ci/audit_dependencies.py where PyPI's JSON API or OSV is reachable)."
        ]
    skipped = len(dependencies) - len(audited)
    return 0, [f"pip-audit: {len(audited)} packages audited, no known vulnerabilities ({skipped} could not be audited)."]


if __name__ == "__main__":
    sys.exit(main())
