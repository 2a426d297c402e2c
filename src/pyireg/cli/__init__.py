"""pyireg: width sweeps of two-layer ReLU networks and implicit regularization, on a fused
native core. The command line: ``main`` parses (cli.parser, built from the command table of
cli.table), runs the command (cli.commands) and turns the errors a person can fix into one line."""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import warnings

from .args import _PACKAGES, _Terminated
from .parser import build_parser

__all__ = ["main", "build_parser"]


def _error_line(e: BaseException, args=None) -> str:
    """One line saying what went wrong and what to do, for the errors a person can fix."""
    if isinstance(e, ImportError):
        mod = (getattr(e, "name", None) or "").split(".")[0]
        pkg, extra = _PACKAGES.get(mod, (mod, "experiments"))
        if mod:
            return (f"this needs the Python package '{pkg}' (module '{mod}' is not installed): "
                    f"pip install \"pyireg[{extra}]\" (or pip install {pkg})")
        return f"{e}; install the extras: pip install \"pyireg[experiments]\""
    if isinstance(e, OSError):
        if len(e.args) >= 2 and isinstance(e.args[0], int):
            msg = str(e.args[1]) + (f": {e.filename}" if e.filename and str(e.filename) not in str(e.args[1]) else "")
        else:
            msg = str(e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            if _resumes(args):
                return (f"disk full ({msg}); free some space, then rerun the same command with --resume "
                        "(finished epochs are kept)")
            return (f"disk full ({msg}); free some space, then rerun the command (it does not resume: what it wrote "
                    "so far may be incomplete)")
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not msg.startswith(("out:", "--")):
            return f"cannot write ({msg}); choose another output path or fix its permissions"
        return msg
    if isinstance(e, MemoryError):
        return str(e) or "out of memory; use fewer or narrower widths"
    return str(e)


def _resumes(args) -> bool:
    """Whether the command has --resume (those that checkpoint their sweeps)."""
    return args is not None and hasattr(args, "resume")


def _again(args) -> str:
    """What to do after an interruption: resume, for the commands that checkpoint; else start over."""
    if _resumes(args):
        unit = "pack" if getattr(args, "ray", False) else "epoch"
        return f"every finished {unit} is saved; rerun the same command with --resume to continue"
    return "this command does not resume: rerun it (what it wrote so far may be incomplete)"


def _show_warning(message, category, filename, lineno, file=None, line=None):
    prog = "pyireg"
    print(f"{prog}: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from ..experiments.record import set_command
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    args._argv = argv                            # the command as given (bench reruns it in a child)
    set_command(argv)                            # the run record of what this process runs
    from ..distributed.executors import PackError
    from ..experiments.refusals import SweepStateError
    ordinary = (ValueError, TypeError, OSError, ImportError, MemoryError, SweepStateError, PackError)
    from ..experiments.sweep import ChanceWarning
    old_term = signal.getsignal(signal.SIGTERM)
    terminated = []                              # remembered: Ray turns the exception into KeyboardInterrupt

    def on_term(signum, frame):
        terminated.append(signum)
        raise _Terminated

    in_main = __import__("threading").current_thread() is __import__("threading").main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        with warnings.catch_warnings():          # the command line shows its warnings as one line each
            warnings.simplefilter("always", ChanceWarning)
            warnings.showwarning = _show_warning
            return args.func(args)
    except KeyboardInterrupt as e:
        term = isinstance(e, _Terminated) or bool(terminated)
        print(f"\npyireg {args.command}: {'terminated' if term else 'interrupted'}: {_again(args)}", file=sys.stderr)
        return 128 + signal.SIGTERM if term else 130
    except BrokenPipeError:                      # output piped into head, less, ...: stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except ordinary as e:
        if args.traceback:
            raise
        print(f"pyireg {args.command}: error: {_error_line(e, args)}", file=sys.stderr)
        return 2
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())

