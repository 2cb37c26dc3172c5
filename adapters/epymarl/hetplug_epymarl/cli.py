"""``hetplug-epymarl``: EPyMARL's ``src/main.py`` with the ``hetplug:`` key enabled.

    cd epymarl && hetplug-epymarl --config=qmix --env-config=gymma with env_args.key=...

takes exactly main.py's arguments. EPyMARL's ``src/`` is found from ``--epymarl-src PATH``,
else ``$HETPLUG_EPYMARL_SRC``, else ``./src`` (a checkout's root) or ``.`` (its src/).
``--transfer`` evaluates a saved agent at another team size without training
(:mod:`hetplug_epymarl.transfer`).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

ENV_VAR = "HETPLUG_EPYMARL_SRC"

USAGE = f"""usage: hetplug-epymarl [--epymarl-src PATH] --config=ALG --env-config=ENV [with KEY=VALUE ...]

EPyMARL's src/main.py with the `hetplug:` key of an algorithm yaml enabled: the same
arguments as `python src/main.py`. Add one line to src/config/algs/<ALG>.yaml, e.g.

    hetplug: {{plugins: [shep], positions: {{key: obs, slice: [9, 11]}}}}

and run from the checkout. A config without the key runs EPyMARL unchanged.

options:
  --epymarl-src PATH   EPyMARL's src/ (default: ${ENV_VAR}, else ./src or . from the working directory)
  --transfer           evaluate a saved agent with another team size (docs/epymarl.md, "Zero-shot team size")
  -h, --help           this message

docs: docs/epymarl.md and docs/configuration.md in hetplug's repository."""


def fail(message: str) -> None:
    """One line on stderr, exit status 2 (a usage error: nothing was started)."""
    print(f"hetplug-epymarl: {message}", file=sys.stderr)
    raise SystemExit(2)


def find_src(explicit: str | None, cwd: Path | None = None) -> Path:
    """EPyMARL's ``src/`` directory (it holds main.py and run.py)."""
    cwd = Path.cwd() if cwd is None else cwd
    if explicit:
        candidates, origin = [Path(explicit)], "--epymarl-src"
    elif os.environ.get(ENV_VAR):
        candidates, origin = [Path(os.environ[ENV_VAR])], f"${ENV_VAR}"
    else:
        candidates, origin = [cwd / "src", cwd], f"the working directory {cwd}"
    for path in candidates:
        for src in (path, path / "src"):
            if (src / "main.py").is_file() and (src / "run.py").is_file():
                return src.resolve()
    fail(
        f"no EPyMARL src/ (with main.py and run.py) found from {origin}; "
        f"run it from an EPyMARL checkout, or pass --epymarl-src PATH or set {ENV_VAR}"
    )


def check_config(src: Path, argv: list[str]) -> None:
    """The ``hetplug:`` key of ``--config=ALG``'s yaml, checked before EPyMARL starts: a
    mistake is one line naming the key (exit status 2), not a traceback after setup."""
    import yaml

    import hetplug

    name = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    path = src / "config" / "algs" / f"{name}.yaml"
    if name is None or not path.is_file():
        return  # EPyMARL reports a missing config itself
    value = (yaml.safe_load(path.read_text()) or {}).get("hetplug")
    try:
        hetplug.parse_config(value)
    except (ValueError, TypeError) as err:
        fail(f"{path.name}: {err}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    transfer = "--transfer" in argv
    if transfer:  # evaluate a saved agent at another team size (hetplug_epymarl.transfer)
        argv.remove("--transfer")
    explicit = None
    for i, arg in enumerate(argv):
        if arg == "--epymarl-src" and i + 1 < len(argv):
            explicit = argv[i + 1]
            del argv[i : i + 2]
            break
        if arg.startswith("--epymarl-src="):
            explicit = arg.split("=", 1)[1]
            del argv[i]
            break
    src = find_src(explicit)
    check_config(src, argv)
    sys.path.insert(0, str(src))
    from hetplug_epymarl import install

    install("epymarl", transfer=transfer)
    sys.argv = [str(src / "main.py"), *argv]
    runpy.run_path(str(src / "main.py"), run_name="__main__")


if __name__ == "__main__":
    main()
