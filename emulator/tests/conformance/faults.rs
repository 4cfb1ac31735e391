//! Quotas and faults through the control API (docs/emulator.md, "Fault rules").

use crate::support::{error_reason, timed, TestEmu};
use reqwest::Method;
use serde_json::json;

const EV: &str = "/calendar/v3/calendars/primary/events";

#[tokio::test]
async fn each_fault_kind_answers_with_googles_status_and_reason() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let cases = [
        (
            json!({"kind": "rateLimitExceeded"}),
            403,
            "rateLimitExceeded",
            "usageLimits",
        ),
        (
            json!({"kind": "rateLimitExceeded", "status": 429}),
            429,
            "rateLimitExceeded",
            "usageLimits",
        ),
        (
            json!({"kind": "userRateLimitExceeded"}),
            403,
            "userRateLimitExceeded",
            "usageLimits",
        ),
        (
            json!({"kind": "quotaExceeded"}),
            403,
            "quotaExceeded",
            "usageLimits",
        ),
        (
            json!({"kind": "backendError"}),
            500,
            "backendError",
            "global",
        ),
        (
            json!({"kind": "backendError", "status": 503}),
            503,
            "backendError",
            "global",
        ),
        (json!({"kind": "notFound"}), 404, "notFound", "global"),
    ];
    for (mut rule, status, reason, domain) in cases {
        rule["count"] = json!(1);
        emu.fault(rule).await;
        let r = emu.call(Method::GET, EV, &t, None).await;
        assert_eq!(r.status.as_u16(), status, "{reason}");
        assert_eq!(error_reason(&r), reason);
        assert_eq!(r.body["error"]["errors"][0]["domain"], domain);
        assert_eq!(
            emu.call(Method::GET, EV, &t, None).await.status,
            200,
            "count 1 fires once"
        );
    }
    let r = emu.control(Method::GET, "/emulator/faults", None).await;
    assert_eq!(r.body["faults"], json!([]));
}

#[tokio::test]
async fn faults_can_target_one_account_and_one_method_and_be_cleared() {
    let emu = TestEmu::start(2).await;
    let (a, b) = (emu.token(0).await, emu.token(1).await);
    let id = emu
        .fault(
            json!({"kind": "backendError", "account": emu.email(0), "methods": ["events.insert"]}),
        )
        .await;
    let body = timed("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z");
    assert_eq!(
        emu.call(Method::POST, EV, &a, Some(body.clone()))
            .await
            .status,
        500
    );
    assert_eq!(
        emu.call(Method::POST, EV, &a, Some(body.clone()))
            .await
            .status,
        500
    );
    assert_eq!(emu.call(Method::GET, EV, &a, None).await.status, 200);
    assert_eq!(
        emu.call(Method::POST, EV, &b, Some(body.clone()))
            .await
            .status,
        200
    );
    let d = emu
        .control(Method::DELETE, &format!("/emulator/faults/{id}"), None)
        .await;
    assert_eq!(d.status, 204);
    assert_eq!(emu.call(Method::POST, EV, &a, Some(body)).await.status, 200);
}

#[tokio::test]
async fn probability_zero_never_fires_and_probability_one_always_fires() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    emu.fault(json!({"kind": "quotaExceeded", "probability": 0.0}))
        .await;
    for _ in 0..20 {
        assert_eq!(emu.call(Method::GET, EV, &t, None).await.status, 200);
    }
    emu.control(Method::DELETE, "/emulator/faults", None).await;
    emu.fault(json!({"kind": "quotaExceeded", "probability": 1.0}))
        .await;
    assert_eq!(emu.call(Method::GET, EV, &t, None).await.status, 403);
    let bad = emu
        .control(
            Method::POST,
            "/emulator/faults",
            Some(json!({"kind": "quotaExceeded", "probability": 2.0})),
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn the_per_user_sliding_window_limits_requests_per_minute() {
    let emu = TestEmu::start(2).await;
    emu.settings(json!({"rateLimitPerMinute": 5})).await;
    let (a, b) = (emu.token(0).await, emu.token(1).await);
    for _ in 0..5 {
        assert_eq!(emu.call(Method::GET, EV, &a, None).await.status, 200);
    }
    let r = emu.call(Method::GET, EV, &a, None).await;
    assert_eq!(r.status, 403);
    assert_eq!(error_reason(&r), "userRateLimitExceeded");
    assert_eq!(
        emu.call(Method::GET, EV, &b, None).await.status,
        200,
        "other users are not limited"
    );
    emu.control(
        Method::POST,
        "/emulator/clock/advance",
        Some(json!({"seconds": 61})),
    )
    .await;
    assert_eq!(emu.call(Method::GET, EV, &a, None).await.status, 200);
}

#[tokio::test]
async fn latency_fault_delays_answers() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    emu.fault(json!({"kind": "latency", "latencyMs": 150, "jitterMs": 10, "count": 1}))
        .await;
    let started = std::time::Instant::now();
    assert_eq!(emu.call(Method::GET, EV, &t, None).await.status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
}

#[tokio::test]
async fn counters_count_requests_by_method_and_status_and_reset() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    emu.control(Method::DELETE, "/emulator/counters", None)
        .await;
    emu.call(Method::GET, EV, &t, None).await;
    emu.call(Method::GET, EV, &t, None).await;
    emu.call(Method::GET, &format!("{EV}/missing01"), &t, None)
        .await;
    let c = emu.control(Method::GET, "/emulator/counters", None).await;
    assert_eq!(c.body["byMethod"]["events.list"]["200"], 2);
    assert_eq!(c.body["byMethod"]["events.get"]["404"], 1);
    let per = emu
        .control(
            Method::GET,
            &format!("/emulator/counters?account={}", emu.email(0)),
            None,
        )
        .await;
    assert_eq!(per.body["total"], 3);
    emu.control(Method::DELETE, "/emulator/counters", None)
        .await;
    let c = emu.control(Method::GET, "/emulator/counters", None).await;
    assert_eq!(c.body["total"], 0);
}
