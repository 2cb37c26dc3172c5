"""The ``hetplug`` command: ``hetplug <subcommand> [options]``."""

from __future__ import annotations

import sys

from hetplug.config import did_you_mean

#: subcommand -> (what it does, the extra that provides it)
COMMANDS = {
    "demo": (
        "short BenchMARL trainings with and without each method, several seeds, with statistics",
        "demo",
    ),
    "compare": (
        "variants x seeds of BenchMARL runs on Ray, judged with rliable (IQM, CIs, P(improvement))",
        "compare",
    ),
}

USAGE = (
    "usage: hetplug <command> [options]\n\ncommands:\n"
    + "".join(f"  hetplug {name:<9} {what}\n" for name, (what, _) in COMMANDS.items())
    + "\n'hetplug <command> --help' lists a command's options."
)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        hint = did_you_mean(command, list(COMMANDS))
        print(
            f"hetplug: unknown command {command!r}{hint} (commands: {', '.join(COMMANDS)})", file=sys.stderr
        )
        return 2
    try:
        if command == "demo":
            from hetplug_benchmarl.demo import main as run
        else:
            from hetplug_benchmarl.compare.cli import main as run
    except ImportError as err:
        extra = COMMANDS[command][1]
        print(f"hetplug {command} needs the '{extra}' extra ({err.name or err} is missing): from a clone of "
              f'hetplug, pip install -c constraints.txt -e ".[{extra}]"', file=sys.stderr)  # fmt: skip
        return 2
    return run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
