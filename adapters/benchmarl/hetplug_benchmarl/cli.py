"""The ``hetplug`` command. Subcommands: ``demo`` (see :mod:`hetplug_benchmarl.demo`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: hetplug demo [options]   (hetplug demo --help for the options)")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        try:
            from hetplug_benchmarl.demo import main as demo
        except ImportError as err:
            print(f'hetplug demo needs BenchMARL ({err}): pip install -c constraints.txt "hetplug[demo]"')
            return 2

        return demo(rest)
    print(f"hetplug: unknown command {command!r}; available: demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
