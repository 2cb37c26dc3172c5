"""The entries: ``install()`` around the host's ``run_sequential`` (a config without the key
runs the host unchanged) and the ``hetplug-epymarl`` launcher's search for ``src/``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import hetplug_epymarl
from hetplug_epymarl.cli import find_src


def _saved_params(root: Path) -> dict[str, torch.Tensor]:
    models = sorted(root.glob("results/sacred/**/models/*"), key=lambda p: int(p.name))[-1]
    out = {}
    for name in ("agent.th", "mixer.th"):
        for k, v in torch.load(models / name).items():
            out[f"{name}:{k}"] = v
    return out


@pytest.mark.slow
def test_a_config_without_the_key_runs_the_host_unchanged(host, tmp_path):
    """Same seed, same final parameters: installed-but-unused vs. not installed at all."""
    hetplug_epymarl.uninstall()
    assert not hasattr(host.prun.run_sequential, "__hetplug_original__")
    (tmp_path / "plain").mkdir()
    os.chdir(tmp_path / "plain")
    host.run("qmix", None, t_max=300, save_model=True)
    plain = _saved_params(tmp_path / "plain")
    hetplug_epymarl.install("pymarlzooplus")
    (tmp_path / "wrapped").mkdir()
    os.chdir(tmp_path / "wrapped")
    host.run("qmix", None, t_max=300, save_model=True)
    wrapped = _saved_params(tmp_path / "wrapped")
    assert plain.keys() == wrapped.keys()
    for k in plain:
        torch.testing.assert_close(plain[k], wrapped[k], rtol=0, atol=0)
    # and with hetplug the parameters differ (the prioritised update really ran)
    (tmp_path / "per").mkdir()
    os.chdir(tmp_path / "per")
    host.run("qmix", ["per"], t_max=300, save_model=True)
    per = _saved_params(tmp_path / "per")
    assert any(not torch.equal(plain[k], per[k]) for k in plain)


def _fake_src(root: Path) -> Path:
    src = root / "src"
    src.mkdir(parents=True)
    (src / "main.py").write_text("")
    (src / "run.py").write_text("")
    return src


def test_find_src_from_checkout_flag_and_env(tmp_path, monkeypatch, capsys):
    src = _fake_src(tmp_path / "epymarl")
    monkeypatch.delenv("HETPLUG_EPYMARL_SRC", raising=False)
    assert find_src(None, cwd=tmp_path / "epymarl") == src.resolve()
    assert find_src(None, cwd=src) == src.resolve()
    assert find_src(str(tmp_path / "epymarl")) == src.resolve()
    monkeypatch.setenv("HETPLUG_EPYMARL_SRC", str(src))
    assert find_src(None, cwd=tmp_path) == src.resolve()
    monkeypatch.delenv("HETPLUG_EPYMARL_SRC")
    with pytest.raises(SystemExit) as exc:
        find_src(None, cwd=tmp_path)
    assert exc.value.code == 2 and "no EPyMARL src/" in capsys.readouterr().err


def test_launcher_help_and_a_bad_key_are_one_line_before_epymarl_starts(tmp_path, capsys):
    from hetplug_epymarl.cli import main

    main(["--help"])
    assert capsys.readouterr().out.startswith("usage: hetplug-epymarl")
    src = _fake_src(tmp_path / "epymarl")
    (src / "config" / "algs").mkdir(parents=True)
    (src / "config" / "algs" / "bad.yaml").write_text("hetplug: {plugins: [shepp]}\n")
    with pytest.raises(SystemExit) as exc:
        main(["--epymarl-src", str(src), "--config=bad", "--env-config=gymma"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "(did you mean 'shep'?)" in err
