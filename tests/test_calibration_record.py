"""The calibration record (retriever.calibration.record): records written by today's and older code read
back, round-trip, and keep what they do not know."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

from retriever.calibration.record import (
    SCHEMA_VERSION,
    AdaptivePart,
    CalibrationRecord,
    HybridPart,
    PlanPart,
    parse_record,
)
from retriever.query.adaptive import AdaptiveRule, first_plan
from retriever.query.fusion import Fusion
from retriever.query.plan import default_plan

LADDER = (64, 128, 256, 384)

# Written by `funnel calibrate fin --queries … --qrels …` (tests/test_hybrid_bench.py), encoder trials cut to two.
HYBRID_RUN = json.loads("""{
 "plan": "384:10", "k": 10, "hnsw_ef": null, "recall_vs_exact": 1.0, "target": 0.98, "met": true, "queries": 20,
 "source": "20 stored chunks used as queries",
 "adaptive": {"k": 10, "first_plan": "384:20", "probe": 10, "signal": "margin", "threshold": -10.0, "first_ef": 20,
  "target": 0.98, "recall_vs_exact": 1.0, "widened_share": 0.0, "mean_candidates": 20.0,
  "mean_ms_fixed": 0.2835278000134167, "p50_ms_fixed": 0.27203849998613805, "mean_ms_adaptive": 0.3389977499921315,
  "p50_ms_adaptive": 0.3242759999579903, "adaptive_pays": false},
 "hybrid": {"fusion": {"method": "dbsf", "lexical_limit": 20, "dense_limit": 20, "rrf_k": 60, "dense_weight": 1.0,
  "lexical_weight": 1.0}, "default_mode": "hybrid",
  "ndcg": {"dense": 0.3553410909182319, "lexical": 1.0, "hybrid": 1.0, "best": 1.0}, "k": 10, "queries": 30,
  "margin": 0.005, "source": "30 judged queries from beir/queries.jsonl / beir/qrels/train.tsv"},
 "encoder": {"query": "openvino", "document": "openvino", "k": 10,
  "source": "20 pieces of stored chunks used as queries, 90 stored chunks", "recall_floor": 0.99,
  "ndcg_budget": 0.002, "ndcg_fp32": null, "trials": [
   {"encoder": "torch", "precision": "fp32", "load_s": 0.0, "query_p50_ms": 20.536, "query_p99_ms": 27.452,
    "passages_per_s": 68.7, "recall_vs_fp32": 1.0, "recall_vs_fp32_both": 1.0, "ndcg": null, "error": null},
   {"encoder": "openvino", "precision": "bf16", "load_s": 0.344, "query_p50_ms": 3.649, "query_p99_ms": 12.555,
    "passages_per_s": 121.1, "recall_vs_fp32": 0.99, "recall_vs_fp32_both": 0.99, "ndcg": null, "error": null}]}
}""")

# Written by `funnel calibrate syn --layouts … --apply` (tests/test_layout_calibrate.py).
LAYOUT_RUN = json.loads("""{
 "plan": "128:20,384:10", "k": 10, "hnsw_ef": 48, "recall_vs_exact": 1.0, "target": 0.98, "met": true,
 "queries": 30, "source": "30 stored chunks used as queries",
 "adaptive": {"k": 10, "first_plan": "128:20,384:20", "probe": 10, "signal": "margin", "threshold": -10.0,
  "first_ef": null, "target": 0.98, "recall_vs_exact": 1.0, "widened_share": 0.0, "mean_candidates": 40.0,
  "mean_ms_fixed": 0.35060156665167597, "p50_ms_fixed": 0.3562339998097741, "mean_ms_adaptive": 0.5583810333519068,
  "p50_ms_adaptive": 0.5528155001002233, "adaptive_pays": false},
 "layouts": {"k": 10, "target": 0.95, "queries": 30, "current": "64:none", "chosen": "128:int8", "changed": true,
  "applied": true, "rule": "lowest p50 among the layouts meeting the target",
  "trials": [{"layout": "64:none", "current": true, "plan": "64:20,384:10", "hnsw_ef": 24,
              "recall_vs_exact": 0.9966666666666666, "met": true, "p50_ms": 0.3694580000228598, "build_s": null,
              "disk_bytes": 17403904},
             {"layout": "128:int8", "current": false, "plan": "128:20,384:10", "hnsw_ef": 32,
              "recall_vs_exact": 1.0, "met": true, "p50_ms": 0.5496765000998494, "build_s": 1.1996582900001158,
              "disk_bytes": 17809408}]}
}""")


def test_todays_records_read_back_and_round_trip():
    for stored in (HYBRID_RUN, LAYOUT_RUN):
        record = CalibrationRecord.from_dict(stored)
        written = record.to_dict()
        assert written == {"schema": SCHEMA_VERSION, **stored}  # the same shape, plus the version
        assert json.loads(json.dumps(written)) == written
        assert CalibrationRecord.from_dict(written) == replace(record, schema=SCHEMA_VERSION)
        assert record.schema is None and record.extra == {}
        assert record.plan is not None and record.plan.extra == {}
        assert record.adaptive is not None and record.adaptive.extra == {}

    fin = CalibrationRecord.from_dict(HYBRID_RUN)
    assert fin.plan == PlanPart(plan="384:10", k=10, hnsw_ef=None, recall_vs_exact=1.0, target=0.98, met=True,
                                queries=20, source="20 stored chunks used as queries")
    assert str(fin.plan_for(LADDER, 5)) == "384:5" and fin.ef_for(fin.plan_for(LADDER, 5)) is None
    assert fin.adaptive_rule(LADDER, 20) == AdaptiveRule(first_plan([], 384, 20, 20), 20, "margin", -10.0, 40)
    assert not fin.adaptive_pays()
    assert fin.fusion() == Fusion("dbsf") and fin.mode() == "hybrid"
    assert fin.query_encoder() == "openvino" and fin.encoder is not None and len(fin.encoder.trials or []) == 2
    assert fin.layouts is None

    syn = CalibrationRecord.from_dict(LAYOUT_RUN)
    assert str(syn.plan_for(LADDER, 20)) == "128:40,384:20" and syn.ef_for(syn.plan_for(LADDER, 20)) == 96
    assert syn.layouts is not None and syn.layouts.chosen == "128:int8" and syn.layouts.applied is True
    assert syn.hybrid is None and syn.fusion() is None and syn.mode() is None and syn.query_encoder() is None


def test_older_records_read_with_their_missing_parts_none():
    first = {"plan": "8:40,32:10", "k": 10, "recall_vs_exact": 1.0}  # a record from before graph widths
    record = CalibrationRecord.from_dict(first)
    assert record.adaptive is None and record.hybrid is None and record.layouts is None and record.encoder is None
    assert record.plan is not None and record.plan.hnsw_ef is None and record.plan.met is None
    assert str(record.plan_for((8, 16, 32), 20)) == "8:80,32:20" and record.ef_for(record.plan_for((8, 32), 20)) is None
    assert record.adaptive_rule(LADDER, 10) is None and not record.adaptive_pays()
    assert record.to_dict() == {"schema": SCHEMA_VERSION, **first, "hnsw_ef": None}  # no width: the default rule

    assert CalibrationRecord.from_dict({"plan": "32:10"}).plan_for(LADDER, 10) == default_plan(LADDER, 10)
    empty = CalibrationRecord.from_dict({})
    assert empty.plan is None and empty.plan_for(LADDER, 10) == default_plan(LADDER, 10)
    assert empty.to_dict() == {"schema": SCHEMA_VERSION}


def test_unknown_keys_and_unexpected_values_are_kept():
    stored = copy.deepcopy(HYBRID_RUN) | {"schema": 7, "rerank": {"model": "x", "depth": 50}, "notes": ["a"]}
    stored["adaptive"] |= {"signal_v2": "entropy", "probe": "ten"}  # a newer key; a value of the wrong type
    stored["hybrid"] = stored["hybrid"] | {"fusion": {"method": "nope"}}  # an invalid fusion
    stored["layouts"] = None  # a section that is not an object
    record = CalibrationRecord.from_dict(stored)
    assert record.schema == 7
    assert record.extra == {"rerank": {"model": "x", "depth": 50}, "notes": ["a"], "layouts": None}
    assert record.adaptive is not None and record.adaptive.probe is None
    assert record.adaptive.extra == {"signal_v2": "entropy", "probe": "ten"}
    assert record.adaptive_rule(LADDER, 10) is None  # unreadable: no rule, as before
    assert record.fusion() is None and record.mode() == "hybrid"
    assert record.to_dict() == stored | {"schema": SCHEMA_VERSION}  # nothing lost

    checked = record.checked(LADDER)  # what the readers use: the damaged parts not at all, and said so
    assert checked.damage == (("adaptive", 'adaptive.probe: "ten" is not an integer'),
                              ("hybrid", 'hybrid.fusion: {"method": "nope"} is not a fusion (unknown fusion '
                                         "'nope' (choose from union, rrf, dbsf))"))
    assert checked.adaptive is None and checked.hybrid is None and checked.plan == record.plan
    assert record.checked(None).damage == checked.damage  # neither needs the ladder

    fixed = replace(record.adaptive, probe=10)  # a typed value set again wins over the kept one
    assert fixed.to_dict()["probe"] == 10


def test_merged_keeps_the_parts_a_new_calibration_did_not_measure():
    previous = CalibrationRecord.from_dict(HYBRID_RUN | {"layouts": LAYOUT_RUN["layouts"], "rerank": {}})
    plan_only = CalibrationRecord.from_dict({k: v for k, v in LAYOUT_RUN.items() if k != "layouts"})
    merged = plan_only.merged(previous)
    assert merged.plan == plan_only.plan and merged.adaptive == plan_only.adaptive
    assert merged.hybrid == previous.hybrid and merged.encoder == previous.encoder
    assert merged.layouts == previous.layouts
    assert "rerank" not in merged.to_dict()
    judged = replace(plan_only, hybrid=HybridPart.from_dict({"fusion": Fusion("rrf").to_dict(),
                                                             "default_mode": "dense"}))
    assert judged.merged(previous).fusion() == Fusion("rrf") and judged.merged(previous).mode() == "dense"
    assert plan_only.merged(None) is plan_only
    assert plan_only.merged(previous.without("encoder")).encoder is None  # encoders measured, none chosen
    assert AdaptivePart.from_dict(HYBRID_RUN["adaptive"]).to_dict() == HYBRID_RUN["adaptive"]


def test_parse_record_reads_again_only_what_changed():
    stored = copy.deepcopy(LAYOUT_RUN)
    first = parse_record(stored)
    assert parse_record(stored) is first and parse_record(dict(stored)) is first  # a server hands out copies
    changed = parse_record(stored | {"plan": "64:30,384:10"})
    assert changed is not None and changed.plan is not None and changed.plan.plan == "64:30,384:10"
    assert parse_record(None) is None
