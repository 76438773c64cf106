"""The Dockerfile, read as Docker would (no Docker engine here): the command is `radixgate serve`, it
runs as a non-root user, its health check asks /health, everything it copies exists and is not
ignored, and its install script installs torch from PyTorch's index, then the project from its own files."""
from __future__ import annotations

import fnmatch
import json
import os
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def test_dockerfile_serves_radixgate_as_a_non_root_user_with_a_health_check():
    steps = instructions(ROOT / "Dockerfile")
    kinds = [k for k, _ in steps]
    args = {k: a for k, a in steps}                  # the last of each kind is the one that counts
    base = next(a for k, a in steps if k == "ARG" and a.startswith("BASE="))
    assert base.startswith("BASE=nvidia/cuda:") and args["FROM"] == "${BASE}"
    assert exec_form(args["ENTRYPOINT"]) + exec_form(args.get("CMD", "[]")) == ["radixgate", "serve"]
    user = args["USER"]
    assert user not in ("root", "0") and not user.startswith("0:")
    assert kinds.index("USER") < kinds.index("ENTRYPOINT") and kinds.index("USER") > kinds.index("RUN")
    health = args["HEALTHCHECK"]
    assert "/health" in health and "CMD" in health and "RADIXGATE_PORT" in health
    assert "RADIXGATE_HOST=0.0.0.0" in args["ENV"] and "EXPOSE" in kinds and args["EXPOSE"] == "8000"
    run = args["RUN"]
    assert "scripts/docker-install" in run and "curl" not in run and "wget" not in run   # no downloads of its own


def test_every_copied_path_exists_and_the_dockerignore_keeps_it():
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith("#")]
    copies = [exec_form(a) for k, a in instructions(ROOT / "Dockerfile") if k == "COPY"]
    assert copies
    for *sources, dest in copies:
        assert dest.startswith("/src")
        for src in sources:
            assert (ROOT / src).exists(), src
            assert not any(fnmatch.fnmatch(src, pat) or src.split("/")[0] == pat for pat in ignored), src
    copied = {s.split("/")[0] for *sources, _ in copies for s in sources}
    packages = {"gateway", "kernels", "sdk", "loadtest"}                 # pyproject's packages.find include
    assert packages <= copied and {"pyproject.toml", "README.md"} <= copied


def dry_run(**env) -> list[str]:
    out = subprocess.run([str(ROOT / "scripts" / "docker-install")], capture_output=True, text=True, check=True,
                         env={**os.environ, "DRY_RUN": "1", "SRC": str(ROOT), **env})
    return out.stdout.splitlines()


def test_install_script_takes_torch_from_its_index_then_the_project_from_its_own_files():
    steps = dry_run(TORCH="cu128", EXTRAS="gpu", VENV="/opt/rg")
    pips = [s for s in steps if "/opt/rg/bin/pip install" in s]
    assert pips == ["/opt/rg/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cu128 torch",
                    f"/opt/rg/bin/pip install --no-cache-dir {ROOT}[gpu]"]
    assert any(s.startswith("useradd ") and s.endswith(" radixgate") for s in steps)
    assert steps[-1] == "/opt/rg/bin/radixgate serve --help"
    cpu = dry_run(TORCH="cpu", EXTRAS="")
    assert "https://download.pytorch.org/whl/cpu torch" in cpu[5] and cpu[6].endswith(f"install --no-cache-dir {ROOT}")
    bad = subprocess.run([str(ROOT / "scripts" / "docker-install")], capture_output=True, text=True,
                         env={**os.environ, "DRY_RUN": "1", "SRC": str(ROOT), "TORCH": "cuda; rm -rf /"})
    assert bad.returncode == 1 and "TORCH must be" in bad.stderr


def test_readme_has_the_docker_one_liner():
    text = (ROOT / "README.md").read_text()
    assert "docker run --gpus all -p 8000:8000 -v ~/models:/models" in text and "--model /models/" in text
