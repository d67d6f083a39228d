"""The CLI's persistent JAX compilation cache: a user folder by default, opt-out by env or flag
(each case in a fresh process: the cache is a process-wide JAX setting)."""
import os
import subprocess
import sys

from febone.cli import build_parser

SCRIPT = ("import jax; from febone.compile_cache import enable_compilation_cache as e; "
          "p = e(); jax.jit(lambda x: 2.0 * x + 1.0)(3.0).block_until_ready(); "
          "print(p, jax.config.jax_compilation_cache_dir)")


def run(env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("FEBONE_CACHE", "FEBONE_NO_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env.update(XDG_CACHE_HOME=str(tmp_path), **env_extra)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_cache_in_the_user_folder_and_written(tmp_path):
    folder = tmp_path / "febone" / "jax"
    assert run({}, tmp_path) == [str(folder), str(folder)]
    assert any(folder.iterdir())  # the compiled program was stored


def test_opt_out_by_environment(tmp_path):
    assert run({"FEBONE_NO_COMPILATION_CACHE": "1"}, tmp_path) == ["None", "None"]
    assert not (tmp_path / "febone").exists()


def test_febone_cache_variable_and_cli_flag(tmp_path):
    assert run({"FEBONE_CACHE": str(tmp_path / "c")}, tmp_path)[0] == str(tmp_path / "c" / "jax")
    args = build_parser().parse_args(["--no-compilation-cache", "info"])
    assert args.no_compilation_cache
