"""The collections themselves: ``funnel collections`` (list, ``copy``), ``funnel info``, ``funnel drop``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from retriever.cli.options import catalog, engine_options, json_option, placement_options
from retriever.errors import BadInputError, FunnelError

if TYPE_CHECKING:
    from retriever.calibration.record import CalibrationRecord
    from retriever.query.adaptive import AdaptiveRule
    from retriever.query.fusion import Fusion
    from retriever.store.base import Catalog, Collection, CollectionInfo
    from retriever.store.spec import CollectionSpec


@click.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="also list funnel bench's scratch collections (bench-…)")
@json_option
@engine_options
@click.pass_context
def collections(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List the collections (of the data directory, or of the Qdrant server) with their point counts
    (a collection held by a running funnel serve: counted by that server); 'copy' copies one.
    funnel bench's scratch collections (bench-…) are listed with --all."""
    from retriever.cli.display import err, print_collections, print_json, spec_dict
    from retriever.store.paths import is_bench_collection

    if ctx.invoked_subcommand is not None:
        return
    store = catalog(ctx)
    names = store.names()
    hidden = 0 if show_all else sum(map(is_bench_collection, names))
    specs, unreadable, counts = [], {}, _Counts(ctx, store)
    for name in names if show_all else [n for n in names if not is_bench_collection(n)]:
        try:
            specs.append(store.read_spec(name))
        except FunnelError as exc:  # one broken collection must not hide the others
            unreadable[name] = str(exc)
            err.print(f"warning: {exc}", highlight=False, markup=False, soft_wrap=True)
    points = {s.name: counts.points(s.name) for s in specs}
    if as_json:
        listed = [spec_dict(s) | {"points": n if isinstance(n := points[s.name], int) else None,
                                  "served_by": counts.served.get(s.name)} for s in specs]
        listed += [{"name": n, "error": e} for n, e in unreadable.items()]
        print_json(sorted(listed, key=lambda item: item["name"]))
    elif specs or unreadable or not hidden:
        print_collections(specs, sorted(unreadable), points, counts.served)
    if hidden:
        err.print(f"({hidden} bench scratch collection{'s' if hidden > 1 else ''} hidden: funnel collections --all "
                  "lists them, funnel drop NAME deletes one)", highlight=False, markup=False)


class _Counts:
    """Point counts for ``funnel collections``: opened here, or asked of the ``funnel serve`` holding them."""

    def __init__(self, ctx: click.Context, store: Catalog) -> None:
        self.ctx, self.store = ctx, store
        self.served: dict[str, str] = {}  # collection → URL of the server that counted it
        self._asked: dict[str, dict[str, int]] = {}  # server URL → its GET /collections counts

    def points(self, name: str) -> int | str:
        """The collection's point count, or why it cannot be counted now ("in use", "unreadable")."""
        from retriever.cli.display import err
        from retriever.errors import CollectionLockedError

        try:
            with self.store.open(name) as coll:
                return int(coll.count())
        except CollectionLockedError:
            return self._from_server(name)
        except FunnelError as exc:  # one collection that cannot be opened must not hide the others
            err.print(f"warning: {exc}", highlight=False, markup=False, soft_wrap=True)
            return "unreadable"

    def _from_server(self, name: str) -> int | str:
        from retriever.cli.warm import served_by, served_client

        server = served_by(self.ctx, name)
        if server is None:
            return "in use"
        self.served[name] = server.url
        if server.url not in self._asked:
            try:
                with served_client(server, name, say=False) as client:
                    self._asked[server.url] = {c.name: c.points for c in client.collections()}
            except FunnelError as exc:  # no key, a refused key, a server gone: list it all the same
                from retriever.cli.display import err

                err.print(f"warning: {exc}", highlight=False, markup=False, soft_wrap=True)
                self._asked[server.url] = {}
        return self._asked[server.url].get(name, "in use")


def _engine_url(value: str | None) -> tuple[str | None, Path | None]:
    """A --from-url / --to-url value as (url, data dir): ``embedded`` / ``embedded:DIR`` → ("", dir)."""
    if value is None:
        return None, None
    if value == "embedded" or value.startswith("embedded:"):
        rest = value[len("embedded:"):] if ":" in value else ""
        return "", Path(rest).expanduser() if rest else None
    return value, None


@collections.command("copy")
@click.argument("source")
@click.argument("target")
@click.option("--from-url", envvar="FUNNEL_COPY_FROM", show_envvar=True, default=None,
              help="engine to copy from: http(s)://HOST:6333, path:DIR, embedded or embedded:DATA_DIR "
              "[default: the command's engine]")
@click.option("--to-url", envvar="FUNNEL_COPY_TO", show_envvar=True, default=None,
              help="engine to copy into, same forms [default: the command's engine]")
@click.option("--batch-size", envvar="FUNNEL_COPY_BATCH_SIZE", show_envvar=True, type=int, default=512,
              help="points per batch")
@click.option("--verify-sample", envvar="FUNNEL_COPY_VERIFY_SAMPLE", show_envvar=True, type=click.IntRange(0, 1000),
              default=20, help="stored points used as exact-search queries on both sides to check the copy")
@click.option("--layout", "layout_text", envvar="FUNNEL_COPY_LAYOUT", show_envvar=True, default=None,
              help="give TARGET another storage layout, DIM:QUANTIZATION[:disk|:ram] (graph dim; none, int8, binary, "
              "binary1.5 or binary2), e.g. the one funnel calibrate --layouts chose; the calibration is then not "
              "copied (calibrate TARGET) [default: the source's]")
@click.option("--lexical", envvar="FUNNEL_COPY_LEXICAL", show_envvar=True, type=click.Choice(["none", "bm25"]),
              default=None, help="give TARGET this lexical index (bm25: built from the chunk text the points carry, "
              "nothing re-embedded; none: without one) [default: the source's]")
@click.option("--lexical-analyzer", envvar="FUNNEL_COPY_LEXICAL_ANALYZER", show_envvar=True,
              type=click.Choice(["english", "plain"]), default=None,
              help="the analyzer of TARGET's BM25 index (see funnel index) [default: the source's, else english]")
@json_option
@engine_options
@placement_options
@click.pass_context
def copy(ctx: click.Context, source: str, target: str, from_url: str | None, to_url: str | None, batch_size: int,
         verify_sample: int, layout_text: str | None, lexical: str | None, lexical_analyzer: str | None,
         as_json: bool) -> None:
    """Copy collection SOURCE to TARGET, between any two engines: points, spec and calibration.

    Resumable: re-run the same command after an interruption. Checked at the end: point counts and
    the exact-search top 10 of sample points agree. The placement options apply to TARGET.
    """
    from dataclasses import asdict

    from retriever.cli.display import err, print_json
    from retriever.store.copy import check_target_place, copy_collection
    from retriever.store.layout import parse_layout

    src_url, src_dir = _engine_url(from_url)
    dst_url, dst_dir = _engine_url(to_url)
    src = catalog(ctx, src_url, src_dir, placement=False)
    if dst_url is not None:
        check_target_place(dst_url, [ctx.obj["data_dir"], *([src.local_dir] if src.local_dir is not None else [])])
    dst = catalog(ctx, dst_url, dst_dir)
    if dst.location == ":memory:":
        raise BadInputError(f"cannot copy {source!r} into :memory:: the copy would vanish when this command exits; "
                            "give --to-url a server URL, path:DIR, embedded or embedded:DATA_DIR")
    spec = src.read_spec(source)
    layout = parse_layout(layout_text, spec) if layout_text is not None else None
    lexical_choice = _lexical_choice(spec, lexical, lexical_analyzer)
    result = copy_collection(src, source, dst, target, batch_size=batch_size, verify_sample=verify_sample,
                             layout=layout, lexical=lexical_choice)
    if as_json:
        print_json(asdict(result) | {"from": src.location, "to": dst.location})
        return
    calibration = ("copied" if result.calibration
                   else f"not copied ({result.calibration_damaged})" if result.calibration_damaged
                   else "none" if layout is None
                   else f"not copied (new layout {layout}: run funnel calibrate {target})")
    err.print(f"copied {source} ({src.location}) → {target} ({dst.location}): {result.points:,} points, "
              f"{result.written:,} written, {result.unchanged:,} already there; calibration "
              f"{calibration}; checked {result.verified_queries} exact searches "
              f"in {result.seconds:.1f} s", highlight=False, markup=False)


def _lexical_choice(spec: Any, lexical: str | None, analyzer: str | None) -> tuple[str | None, str] | None:
    """copy's --lexical / --lexical-analyzer as copy_collection's ``lexical`` (``None``: the source's)."""
    if lexical is None and analyzer is None:
        return None
    kind = (spec.lexical if lexical is None else None if lexical == "none" else lexical)
    if kind is None and analyzer is not None:
        raise BadInputError("--lexical-analyzer applies to a lexical index: add --lexical bm25")
    return kind, analyzer or (spec.lexical_analyzer if spec.lexical else "english")


@dataclass(frozen=True)
class _Info:
    """What ``funnel info`` shows, read while the collection is open."""

    details: CollectionInfo
    record: CalibrationRecord | None  # checked: damaged parts removed, ``damage`` says what was wrong
    plan: str
    rule: AdaptiveRule | None
    adaptive_default: bool
    mode: str
    fusion: Fusion | None
    location: str
    calibrated_encoder: str | None
    query_encoder: str
    measured_at_index: bool

    @property
    def section(self) -> dict[str, Any] | None:
        """The calibration record's adaptive section (when a rule was read from it)."""
        record = self.record
        return None if self.rule is None or record is None or record.adaptive is None else record.adaptive.to_dict()

    @property
    def fusion_calibrated(self) -> bool:
        return self.record is not None and self.record.fusion() is not None

    @property
    def plan_calibrated(self) -> bool:
        return self.record is not None and self.record.plan is not None

    @classmethod
    def read(cls, ctx: click.Context, name: str) -> _Info:
        """Open the collection, or, when a live ``funnel serve`` holds it, ask that server (warm path)."""
        from retriever.errors import CollectionLockedError

        store = catalog(ctx)
        try:
            coll = store.open(name)
        except CollectionLockedError:
            served = _ServedView.of(ctx, store, name)
            if served is None:
                raise
            return cls.of(cast("Collection", served))
        with coll:
            return cls.of(coll)

    @classmethod
    def of(cls, coll: Collection) -> _Info:
        """What ``funnel info`` shows of an open collection (or of a served one's :class:`_ServedView`)."""
        from retriever.calibration.defaults import (
            adaptive_by_default,
            adaptive_rule_for,
            default_mode_for,
            default_plan_for,
            fusion_for,
            query_encoder_for,
        )
        from retriever.calibration.record import read_record
        from retriever.encoding.embedder import resolve_encoder

        details = coll.info()
        chosen, record = query_encoder_for(coll, None, None), read_record(coll)
        # without a calibrated choice, the one funnel index measured its documents with
        calibrated_encoder = chosen if record is not None and record.query_encoder() is not None else None
        index_encoder = chosen if calibrated_encoder is None else None
        return cls(details=details, record=record, plan=str(default_plan_for(coll, 10)),
                   rule=adaptive_rule_for(coll, 10), adaptive_default=adaptive_by_default(coll),
                   mode=default_mode_for(coll), fusion=fusion_for(coll, None) if details.spec.lexical else None,
                   location=coll.location, calibrated_encoder=calibrated_encoder,
                   query_encoder=calibrated_encoder or index_encoder or resolve_encoder(None, None),
                   measured_at_index=index_encoder is not None)

    def to_dict(self) -> dict[str, Any]:
        from retriever.cli.display import spec_dict

        details, record, fusion = self.details, self.record, self.fusion
        hybrid = None if record is None or record.hybrid is None or not details.spec.lexical else record.hybrid.to_dict()
        return spec_dict(details.spec) | {
            "points": details.points, "disk_bytes": details.disk_bytes, "default_plan_k10": self.plan,
            "plan_calibrated": self.plan_calibrated, "adaptive_default": self.adaptive_default,
            "adaptive": self.section, "default_mode": self.mode,
            "default_fusion": None if fusion is None else str(fusion),
            "fusion_calibrated": fusion is not None and self.fusion_calibrated,
            "hybrid": hybrid,
            "calibration_damaged": None if record is None or not record.damage else [what for _, what in record.damage],
            "query_encoder": self.query_encoder, "query_encoder_calibrated": self.calibrated_encoder is not None,
            "query_encoder_measured_at_index": self.measured_at_index,
            "location": self.location, "path": self.location}

    def print(self) -> None:
        from retriever.cli.display import print_info

        rule, section = self.rule, self.section
        hybrid = None
        if self.fusion is not None:
            hybrid = (f"{self.mode} by default; hybrid fusion {self.fusion} "
                      + ("(calibrated)" if self.fusion_calibrated
                         else "(the default; funnel calibrate --qrels chooses one)"))
        if rule is None or section is None:
            adaptive = "not calibrated (run funnel calibrate)"
        else:
            adaptive = (f"{'the default' if self.adaptive_default else 'not the default (--adaptive to use it)'}: "
                        f"first plan {rule.first}, widen when {rule.signal} < {rule.threshold:.4f} "
                        f"({section.get('widened_share') or 0:.0%} widened, mean "
                        f"{section.get('mean_ms_adaptive') or 0:.2f} ms vs fixed {section.get('mean_ms_fixed') or 0:.2f} ms)")
        encoder_how = ("calibrated" if self.calibrated_encoder
                       else "measured on the corpus by funnel index" if self.measured_at_index
                       else "the default here; funnel calibrate measures the others")
        plan = self.plan + (" (calibrated)" if self.plan_calibrated else " (rule; run funnel calibrate)")
        calibration = None
        if self.record is not None and self.record.damage:
            calibration = ("DAMAGED: " + "; ".join(what for _, what in self.record.damage)
                           + f" (funnel calibrate {self.details.spec.name} writes a new one)")
        print_info(self.details, plan, self.location, adaptive, hybrid, f"{self.query_encoder} ({encoder_how})",
                   calibration)


class _ServedView:
    """A collection held by a running ``funnel serve``, as ``funnel info`` reads it: the spec from the
    data directory, the point count, disk use and calibration record from the server."""

    def __init__(self, spec: CollectionSpec, body: dict[str, Any], location: str) -> None:
        self.spec = spec
        self._body = body
        self.location = location

    @classmethod
    def of(cls, ctx: click.Context, store: Catalog, name: str) -> _ServedView | None:
        from retriever.cli.warm import served_by, served_client

        server = served_by(ctx, name)
        if server is None:
            return None
        with served_client(server, name) as client:
            body = client.collection_info(name)
        return cls(store.read_spec(name), body, f"{store.location} (served by {server.url}, pid {server.pid})")

    def calibration(self) -> dict[str, Any] | None:
        record = self._body.get("calibration")
        return record if isinstance(record, dict) else None

    def info(self) -> CollectionInfo:
        from retriever.store.base import CollectionInfo

        disk = self._body.get("disk_bytes")
        return CollectionInfo(spec=self.spec, points=int(self._body["points"]),
                              disk_bytes=int(disk) if disk is not None else None)


@click.command()
@click.argument("name")
@json_option
@engine_options
@click.pass_context
def info(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show a collection: points, dims, model, default plan, bytes on disk."""
    from retriever.cli.display import print_json

    shown = _Info.read(ctx, name)
    if as_json:
        print_json(shown.to_dict())
    else:
        shown.print()


@click.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, envvar="FUNNEL_YES", show_envvar=True, help="do not ask for confirmation")
@engine_options
@click.pass_context
def drop(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete a collection and its data."""
    store = catalog(ctx)
    if not store.exists(name):
        store.read_spec(name)  # a clear error for an unknown name before asking
    if not yes and not click.confirm(f"Delete collection {name!r} and all its points?", err=True):
        raise click.Abort()
    store.drop(name)
    click.echo(f"dropped {name}", err=True)
