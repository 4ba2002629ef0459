"""What crosses the process boundary is a dataclass, read by field; and the orchestrator's reading
of it: a config error and a CPU fallback are statuses, not messages to parse."""
from __future__ import annotations

import pytest

from harness.orchestrator.run import fill
from harness.orchestrator.spawn import Outcome
from harness.protocol import (CONFIG_ERROR, CPU_FALLBACK, TRACE, Artifact, WorkerResult, WorkerTask)
from harness.record import RunRecord


def test_a_result_goes_through_json_with_its_artifacts_typed():
    result = WorkerResult(first_call_s=1.5, timing={"median_ms": 2.0, "samples_ms": [2.0]},
                          artifacts=[Artifact(TRACE, "trace.json.gz", "kineto")], flags=[{"code": "x", "detail": "y"}])
    back = WorkerResult.from_json(result.to_json())
    assert back == result and back.artifacts[0].format == "kineto"
    task = WorkerTask(config={"a": 1}, run_dir="/r", compile_cache_dir="/c", process_index=1)
    assert WorkerTask.from_dict(task.to_dict()) == task and not task.first


def test_an_unknown_status_or_field_is_refused():
    with pytest.raises(ValueError, match="status"):
        WorkerResult(status="fine")
    with pytest.raises(ValueError, match="unknown field.*surprise"):
        WorkerResult.from_json('{"status": "ok", "surprise": 1}')


def record_from(*results: WorkerResult, planned: int = 1) -> RunRecord:
    record = RunRecord(run_id="r", status="failed")
    fill(record, [Outcome(result=r) for r in results], planned)
    return record


def test_a_config_error_is_its_key_and_message():
    record = record_from(WorkerResult(status=CONFIG_ERROR, config_key="workload.M",
                                      reason="expected a positive integer, got -3"))
    assert record.status == "failed"
    assert record.config_error == {"key": "workload.M", "message": "expected a positive integer, got -3"}
    assert record.reason == "config error: workload.M: expected a positive integer, got -3"


def test_a_cpu_fallback_fails_with_its_flag():
    record = record_from(WorkerResult(status="ok", timing={"median_ms": 1.0, "cv": 0.0, "iters_per_sample": 1,
                                                           "samples_ms": [1.0]}),
                         WorkerResult(status=CPU_FALLBACK, reason="this node lists 2 GPU(s)"), planned=3)
    assert record.status == "failed" and record.reason == "process 2 of 3: cpu fallback: this node lists 2 GPU(s)"
    assert [f["code"] for f in record.flags].count("cpu_fallback") == 1
    assert record.config_error is None
