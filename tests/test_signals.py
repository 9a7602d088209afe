"""One rule for Ctrl-C and SIGTERM in every ``drn`` command (:mod:`drn_tf.core.signals`,
:func:`drn_tf.cli.main.main`): an exception that lets cleanups run, then one line and 130 / 143; while a
library is being imported, the process ends at once with the same line and status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drn_tf.cli import main as cli_main
from drn_tf.core import signals
from process_helpers import wait_for_library


def _child(code: str, **kw):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.mark.parametrize("signame, status, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_a_signal_inside_an_import_block_ends_the_command_at_once(signame, status, word):
    p = _child(f"""
        import os, signal, sys, time
        from drn_tf.core.signals import command_signals, exit_at_once
        from drn_tf.core.utils import quiet_stderr
        with command_signals("drn x"):
            try:
                with quiet_stderr(), exit_at_once():  # stderr silenced, as while TensorFlow imports
                    os.kill(os.getpid(), signal.{signame})
                    time.sleep(30)
            except BaseException as exc:
                print("caught", type(exc).__name__)
            print("ran on")
    """)
    assert p.returncode == status and p.stderr.strip() == f"drn x: {word}", p.stderr
    assert p.stdout == ""  # nothing ran after the signal: not the sleep, not an except clause


@pytest.mark.parametrize("signame, exc", [("SIGINT", "KeyboardInterrupt"), ("SIGTERM", "Terminated")])
def test_outside_imports_a_signal_is_an_exception_that_lets_cleanups_run(signame, exc):
    p = _child(f"""
        import os, signal, time
        from drn_tf.core.signals import command_signals
        with command_signals("drn x"):
            try:
                os.kill(os.getpid(), signal.{signame})
                time.sleep(30)
            except BaseException as exc:
                print("cleanup after", type(exc).__name__)
    """)
    assert p.returncode == 0 and p.stdout.strip() == f"cleanup after {exc}", p.stderr


def test_the_library_without_a_command_holds_the_signal_until_the_import_is_done():
    p = _child("""
        import os, signal
        from drn_tf.core.signals import exit_at_once
        try:
            with exit_at_once():
                os.kill(os.getpid(), signal.SIGINT)
                print("import finished")
        except KeyboardInterrupt:
            print("KeyboardInterrupt after it")
    """)
    assert p.returncode == 0 and p.stdout.split("\n")[:2] == ["import finished", "KeyboardInterrupt after it"]


@pytest.mark.parametrize("raised, status, word", [(KeyboardInterrupt, 130, "interrupted"),
                                                  (signals.Terminated, 143, "terminated")])
def test_main_says_one_line_and_the_status(monkeypatch, capsys, raised, status, word):
    """Every command: the same line and status (a command's own exception types are not needed)."""
    import drn_tf.cli.commands.info as info

    def stopped(args):
        raise raised()

    real = info.add_parser

    def add_parser(sub, help_text):
        real(sub, help_text)
        sub.choices["info"].set_defaults(func=stopped)

    monkeypatch.setattr(info, "add_parser", add_parser)
    assert cli_main.main(["info"]) == status
    assert capsys.readouterr().err.strip() == f"drn info: {word}"
    assert signal.getsignal(signal.SIGTERM) is not signals._raise  # handlers put back after the command


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("signame, status, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_drn_upscale_stops_while_tensorflow_imports(tmp_path, signame, status, word):
    """The signal acts inside TensorFlow's import: the import does not finish (no exit handler sees Keras)."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('keras imported:', hasattr(sys.modules.get('keras'), 'ops')))\n"
            "from drn_tf.cli.main import main\n"
            "sys.exit(main())\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "upscale", str(tmp_path / "a.png"), "--preset", "drn_s_x2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    wait_for_library(proc, "libtensorflow")  # until TensorFlow's library is being loaded
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status and err.strip().splitlines()[-1] == f"drn upscale: {word}", err
    assert "keras imported" not in out and not (tmp_path / "a_x2.png").exists()
