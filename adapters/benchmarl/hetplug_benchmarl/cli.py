"""The ``hetplug`` command. Subcommands: ``demo`` (see :mod:`hetplug_benchmarl.demo`) and
``compare`` (see :mod:`hetplug_benchmarl.compare.cli`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: hetplug demo [options]      (hetplug demo --help for the options)\n"
              "       hetplug compare [options]   (hetplug compare --help)")  # fmt: skip
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        try:
            from hetplug_benchmarl.demo import main as demo
        except ImportError as err:
            print(f'hetplug demo needs BenchMARL ({err}): pip install -c constraints.txt "hetplug[demo]"')
            return 2

        return demo(rest)
    if command == "compare":
        try:
            from hetplug_benchmarl.compare.cli import main as compare
        except ImportError as err:
            print(f'hetplug compare needs BenchMARL ({err}): pip install -c constraints.txt "hetplug[compare]"',
                  file=sys.stderr)  # fmt: skip
            return 2

        return compare(rest)
    from difflib import get_close_matches

    hint = "".join(f" (did you mean {m!r}?)" for m in get_close_matches(command, ["demo", "compare"], n=1))
    print(f"hetplug: unknown command {command!r}{hint}; available: demo, compare", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
