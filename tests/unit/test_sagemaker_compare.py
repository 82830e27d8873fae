"""The pure parts of the SageMaker target: the shadow-vs-production comparison, endpoint
settling, request builders and names."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline_tools.core.config import ShadowThresholdsConfig, UserMetricConfig
from pipeline_tools.targets import sagemaker as sm

TH = ShadowThresholdsConfig(min_invocations=100, latency_p50_ratio=1.2, latency_p99_ratio=1.5,
                            error_rate_increase=0.5)
GOOD_PROD = sm.VariantMetrics(invocations=1000, errors_5xx=1, latency_p50=10_000, latency_p99=40_000, user=0.9)
GOOD_SHADOW = sm.VariantMetrics(invocations=500, errors_5xx=0, latency_p50=11_000, latency_p99=50_000, user=0.91)
UM = UserMetricConfig(namespace="Vision", name="Accuracy", better="higher", tolerance=0.05)


def _by_name(checks):
    return {c.name: c for c in checks}


def test_all_good_passes():
    status, checks = sm.compare(GOOD_SHADOW, GOOD_PROD, TH, elapsed=600, bake=300, user_metric=UM)
    assert status == "PASS", [c.to_dict() for c in checks]
    assert set(_by_name(checks)) == {"bake", "invocations", "latency_p50", "latency_p99", "errors_5xx", "Accuracy"}


def test_bake_not_elapsed_waits():
    status, checks = sm.compare(GOOD_SHADOW, GOOD_PROD, TH, elapsed=299, bake=300)
    assert status == "WAIT"
    assert _by_name(checks)["bake"].status == "WAIT"


def test_too_few_shadow_requests_waits():
    status, checks = sm.compare(sm.VariantMetrics(**{**GOOD_SHADOW.__dict__, "invocations": 99}), GOOD_PROD, TH,
                                elapsed=600, bake=0)
    assert status == "WAIT"
    assert "99 of 100" in _by_name(checks)["invocations"].why


def test_min_invocations_zero_still_needs_one_request():
    th = ShadowThresholdsConfig(min_invocations=0)
    status, checks = sm.compare(sm.VariantMetrics(), GOOD_PROD, th, elapsed=600, bake=0)
    assert status == "WAIT"
    assert _by_name(checks)["invocations"].status == "WAIT"


def test_no_production_traffic_waits():
    prod = sm.VariantMetrics(**{**GOOD_PROD.__dict__, "invocations": 0})
    status, checks = sm.compare(GOOD_SHADOW, prod, TH, elapsed=600, bake=0)
    assert status == "WAIT"
    assert _by_name(checks)["production"].status == "WAIT"


@pytest.mark.parametrize("metric,ratio", [("latency_p50", 1.2), ("latency_p99", 1.5)])
def test_latency_boundary(metric, ratio):
    prod = getattr(GOOD_PROD, metric)
    at_limit = sm.VariantMetrics(**{**GOOD_SHADOW.__dict__, metric: prod * ratio})
    over = sm.VariantMetrics(**{**GOOD_SHADOW.__dict__, metric: prod * ratio + 1})
    assert _by_name(sm.compare(at_limit, GOOD_PROD, TH, elapsed=1, bake=0)[1])[metric].status == "PASS"
    status, checks = sm.compare(over, GOOD_PROD, TH, elapsed=1, bake=0)
    assert status == "FAIL"
    assert _by_name(checks)[metric].status == "FAIL"
    assert "ms" in _by_name(checks)[metric].why


@pytest.mark.parametrize("side", ["shadow", "production"])
@pytest.mark.parametrize("metric", ["latency_p50", "latency_p99"])
def test_missing_latency_is_never_a_pass(side, metric):
    s = sm.VariantMetrics(**{**GOOD_SHADOW.__dict__, **({metric: None} if side == "shadow" else {})})
    p = sm.VariantMetrics(**{**GOOD_PROD.__dict__, **({metric: None} if side == "production" else {})})
    status, checks = sm.compare(s, p, TH, elapsed=1, bake=0)
    assert status == "WAIT"
    assert side in _by_name(checks)[metric].why


def test_error_rate_increase_boundary():
    # production 1/1000 = 0.1 %; shadow 3/500 = 0.6 % → +0.5 pp is allowed, 3.5/500 = 0.7 % is not
    ok = sm.VariantMetrics(**{**GOOD_SHADOW.__dict__, "errors_5xx": 3})
    bad = sm.VariantMetrics(**{**GOOD_SHADOW.__dict__, "errors_5xx": 3.5})
    assert _by_name(sm.compare(ok, GOOD_PROD, TH, elapsed=1, bake=0)[1])["errors_5xx"].status == "PASS"
    status, checks = sm.compare(bad, GOOD_PROD, TH, elapsed=1, bake=0)
    assert status == "FAIL" and "0.70%" in _by_name(checks)["errors_5xx"].why


def test_missing_error_metric_waits():
    s = sm.VariantMetrics(**{**GOOD_SHADOW.__dict__, "errors_5xx": None})
    assert _by_name(sm.compare(s, GOOD_PROD, TH, elapsed=1, bake=0)[1])["errors_5xx"].status == "WAIT"


@pytest.mark.parametrize("better,shadow,expected", [
    ("higher", 0.9 * 0.95, "PASS"), ("higher", 0.9 * 0.95 - 1e-6, "FAIL"), ("higher", 2.0, "PASS"),
    ("lower", 0.9 * 1.05, "PASS"), ("lower", 0.9 * 1.05 + 1e-6, "FAIL"), ("lower", 0.0, "PASS"),
    ("higher", None, "WAIT"), ("lower", None, "WAIT"),
])
def test_user_metric_direction_and_tolerance(better, shadow, expected):
    um = UserMetricConfig(namespace="Vision", name="Score", better=better, tolerance=0.05)
    s = sm.VariantMetrics(**{**GOOD_SHADOW.__dict__, "user": shadow})
    _, checks = sm.compare(s, GOOD_PROD, TH, elapsed=1, bake=0, user_metric=um)
    assert _by_name(checks)["Score"].status == expected


def test_user_metric_negative_production_value():
    um = UserMetricConfig(namespace="N", name="Margin", better="higher", tolerance=0.1)
    p = sm.VariantMetrics(**{**GOOD_PROD.__dict__, "user": -10.0})
    # -10 with 10 % tolerance: anything ≥ -11 is fine
    for s_val, exp in ((-11.0, "PASS"), (-11.5, "FAIL"), (-5.0, "PASS")):
        s = sm.VariantMetrics(**{**GOOD_SHADOW.__dict__, "user": s_val})
        assert _by_name(sm.compare(s, p, TH, elapsed=1, bake=0, user_metric=um)[1])["Margin"].status == exp


def test_user_metric_from_thresholds_when_not_passed():
    th = ShadowThresholdsConfig(user_metric=UM)
    s = sm.VariantMetrics(**{**GOOD_SHADOW.__dict__, "user": 0.5})
    status, checks = sm.compare(s, GOOD_PROD, th, elapsed=1, bake=0)
    assert status == "FAIL" and _by_name(checks)["Accuracy"].status == "FAIL"


def test_fail_beats_wait():
    s = sm.VariantMetrics(invocations=5, errors_5xx=5, latency_p50=10**9, latency_p99=None)
    status, checks = sm.compare(s, GOOD_PROD, TH, elapsed=0, bake=10)
    assert status == "FAIL"
    assert {c.status for c in checks} == {"FAIL", "WAIT"}


metric = st.one_of(st.none(), st.floats(min_value=0, max_value=1e7, allow_nan=False))


@given(inv=metric, err=metric, p50=metric, p99=metric, pinv=metric, perr=metric, pp50=metric, pp99=metric,
       elapsed=st.floats(min_value=0, max_value=1e4), bake=st.floats(min_value=0, max_value=1e4))
def test_property_overall_is_worst_check_and_missing_never_passes(inv, err, p50, p99, pinv, perr, pp50, pp99,
                                                                   elapsed, bake):
    s = sm.VariantMetrics(inv, err, p50, p99)
    p = sm.VariantMetrics(pinv, perr, pp50, pp99)
    status, checks = sm.compare(s, p, TH, elapsed=elapsed, bake=bake)
    statuses = {c.status for c in checks}
    assert status == ("FAIL" if "FAIL" in statuses else "WAIT" if "WAIT" in statuses else "PASS")
    if status == "PASS":
        assert None not in (inv, err, p50, p99, pinv, perr, pp50, pp99)
        assert inv >= TH.min_invocations and pinv > 0 and elapsed >= bake


def test_combine_with_alarms():
    from pipeline_tools.release import gate

    def verdict(status):
        return gate.Verdict(status, (), 0.0, 0.0, "polling", ())

    for m, a in itertools.product(("PASS", "WAIT", "FAIL"), repeat=2):
        expected = "FAIL" if "FAIL" in (m, a) else "WAIT" if "WAIT" in (m, a) else "PASS"
        assert sm.combine(m, verdict(a)) == expected


# --- settle -------------------------------------------------------------------------------------


@pytest.mark.parametrize("desc,expected", [
    (None, "endpoint does not exist"),
    ({"EndpointStatus": "Updating", "EndpointConfigName": "old"}, None),
    ({"EndpointStatus": "Creating"}, None),
    ({"EndpointStatus": "SystemUpdating", "EndpointConfigName": "new"}, None),
    ({"EndpointStatus": "RollingBack", "EndpointConfigName": "new"}, None),
    ({"EndpointStatus": "InService", "EndpointConfigName": "new"}, "ok"),
])
def test_settle(desc, expected):
    assert sm.settle(desc, "new") == expected


def test_settle_failed_and_rolled_back_explain():
    failed = sm.settle({"EndpointStatus": "Failed", "FailureReason": "model container crashed"}, "new")
    assert failed == "endpoint is Failed: model container crashed"
    back = sm.settle({"EndpointStatus": "InService", "EndpointConfigName": "old", "FailureReason": "OOM"}, "new")
    assert "rolled the update back" in back and "old" in back and "OOM" in back


def test_wait_endpoint_deadline_with_injected_clock():
    now = [1000.0]
    calls = []

    class FakeSM:
        def describe_endpoint(self, EndpointName):
            calls.append(EndpointName)
            return {"EndpointStatus": "Updating", "EndpointConfigName": "old"}

    def sleep(s):
        now[0] += s

    with pytest.raises(sm.EndpointFailed, match="still Updating after 1m"):
        sm.wait_endpoint(FakeSM(), "ep", "new", timeout=60, clock=lambda: now[0], sleep=sleep, poll=15)
    assert len(calls) == 5 and now[0] == 1060.0


# --- builders -------------------------------------------------------------------------------------


def test_shadow_weight_is_sampling_share_of_production_weight():
    assert sm.shadow_weight(1.0, 100) == 1.0
    assert sm.shadow_weight(1.0, 25) == 0.25
    assert sm.shadow_weight(2.0, 10) == 0.2


def test_data_capture_off_and_on():
    assert sm.data_capture(0, "s3://b/p") is None
    dc = sm.data_capture(30, "s3://b/datacapture/ep")
    assert dc["InitialSamplingPercentage"] == 30 and dc["EnableCapture"] is True
    # model outputs only: requests (which may hold personal data) are never written to S3
    assert dc["CaptureOptions"] == [{"CaptureMode": "Output"}]


def test_copy_variant_keeps_only_request_fields():
    described = {"VariantName": "production", "ModelName": "m0", "InitialInstanceCount": 2,
                 "InstanceType": "ml.c5.xlarge", "InitialVariantWeight": 1.0, "CurrentWeight": 1.0,
                 "DeployedImages": [{"SpecifiedImage": "x"}], "CurrentInstanceCount": 2}
    out = sm.copy_variant(described)
    assert out == {"VariantName": "production", "ModelName": "m0", "InitialInstanceCount": 2,
                   "InstanceType": "ml.c5.xlarge", "InitialVariantWeight": 1.0}
    renamed = sm.copy_variant({"VariantName": "shadow", "ModelName": "m"}, name="production")
    assert renamed["VariantName"] == "production"


def test_names_fit_sagemaker_limits():
    long = "a" * 40 + "-staging-" + "b" * 30
    n = sm._fit(long)
    assert len(n) <= 63 and n != sm._fit(long + "x")
    rn = sm.resource_name("proj-staging-vision", "20261127T222226123Z-1a2b3c", "m")
    assert rn == "proj-staging-vision-m20261127222226123-1a2b3c"
    assert all(c.isalnum() or c == "-" for c in rn)
