"""The ``funnel`` root group: global options, one clear error line, and one module per command.

Domain errors (:class:`retriever.errors.FunnelError`), usage errors and OS errors become one line on
stderr and exit code 1; ``--debug`` shows the traceback instead. The commands live in the modules
registered at the bottom; each parses its options, calls the library and prints.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import click

from retriever import interrupts
from retriever.cli import bench, calibrate, collections, documents, index, pairs, search, serve, tune
from retriever.cli.options import engine_options
from retriever.errors import FunnelError
from retriever.interrupts import LINE as INTERRUPTED_LINE


def _one_line_usage_error(exc: click.UsageError) -> click.ClickException:
    """A usage error as one line and exit code 1 (click's own: usage, hint and error, exit code 2)."""
    names, ctx = [], exc.ctx
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    command = " ".join(["funnel", *reversed(names)])
    return click.ClickException(f"{exc.format_message()} (see '{command} --help')")


def _os_error_line(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


class FunnelGroup(click.Group):
    """Turns domain errors, usage errors and OS errors into one clear line and exit code 1."""

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: ANN201 - click's signature
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line_usage_error(exc) from exc
        except KeyboardInterrupt:  # while the options are read: not click's "Aborted!" and exit 1
            interrupts.say(INTERRUPTED_LINE)
            raise click.exceptions.Exit(interrupts.EXIT_CODE) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line_usage_error(exc) from exc
        except (FunnelError, OSError) as exc:
            if ctx.meta.get("funnel.debug"):
                raise
            message = exc if isinstance(exc, FunnelError) else _os_error_line(exc)
            click.echo(f"Error: {message}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            interrupts.say(INTERRUPTED_LINE)
            ctx.exit(interrupts.EXIT_CODE)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The ``funnel`` process itself (not click's test runner, which calls :meth:`main`): Ctrl-C ends
        it promptly with one line and exit code 130 (see :mod:`retriever.interrupts`), also while a model
        loads and after the command is done."""
        interrupts.guard(INTERRUPTED_LINE)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            interrupts.finishing()


def _warnings_as_lines(ctx: click.Context) -> None:
    """Show funnel's own warnings (:class:`~retriever.errors.CalibrationWarning`) as one ``Warning: …``
    line on stderr, for as long as the command runs; other warnings as Python shows them."""
    from retriever.errors import CalibrationWarning

    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, CalibrationWarning):
            click.echo(f"Warning: {message}", err=True)
        else:
            shown(message, category, *args, **kwargs)

    warnings.showwarning = show

    def restore() -> None:
        warnings.showwarning = shown

    ctx.call_on_close(restore)


@click.group(cls=FunnelGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--data-dir",
    envvar="FUNNEL_HOME",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where collections live [default: $XDG_DATA_HOME/funnel or ~/.local/share/funnel]",
)
@click.option("--debug", is_flag=True, envvar="FUNNEL_DEBUG", show_envvar=True, help="show tracebacks on errors")
@engine_options
@click.version_option(package_name="funnel-retriever")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, debug: bool) -> None:
    """funnel: Matryoshka funnel search on Qdrant for RAG applications."""
    from retriever.store.paths import default_data_dir

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _warnings_as_lines(ctx)
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir or default_data_dir()
    ctx.meta["funnel.debug"] = debug


# In the order of `funnel --help` before the split (click lists commands by name anyway).
for command in (index.index, search.search, tune.tune, pairs.pairs, bench.bench, calibrate.calibrate, serve.serve,
                collections.collections, collections.info, collections.drop, documents.docs, documents.delete):
    main.add_command(command)
