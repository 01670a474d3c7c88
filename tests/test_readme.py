"""README.md gives exactly two commands (main job, tests) and .ci/run runs the test command verbatim."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_has_two_commands_that_install_torch_first():
    commands = readme_commands()
    assert len(commands) == 2
    for command in commands:
        assert command.index("pip install torch==2.13.0") < command.index("pip install -e")


def test_ci_runs_the_readme_test_command():
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_pyproject_keeps_torch_a_floor_not_a_pin():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=' in text and "torch==" not in text


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_readme_python_examples_run(tmp_path, monkeypatch):
    """Every Python example that needs no file of the reader's runs as written."""
    monkeypatch.chdir(tmp_path)
    runnable = [block for block in readme_python_blocks() if "best.pt" not in block]
    assert len(runnable) >= 4
    for block in runnable:
        exec(compile(block, "README.md", "exec"), {})
