"""``import hetplug_epymarl.auto`` as the first line of EPyMARL's ``src/main.py`` enables
the ``hetplug:`` config key for every run of that checkout (``src/`` is already on
``sys.path`` when main.py runs as a script)."""

from hetplug_epymarl import install

HOST = install()
