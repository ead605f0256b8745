//! The thresholds, health and the alert state machine.

use super::*;
use chrono::TimeZone;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

fn lagging(bytes: u64) -> Observed {
    Observed {
        lag_bytes: Some(bytes),
        lag_ms: Some(0),
        records: 100,
        ..Observed::default()
    }
}

#[test]
fn thresholds_default_and_read_from_alert_config() {
    let (t, bad) = Thresholds::from_config(&json!({}));
    assert_eq!(t, Thresholds::default());
    assert!(bad.is_empty());
    let (t, bad) = Thresholds::from_config(&json!({
        "lag_threshold": 100000, "lag_threshold_ms": 5000, "error_rate_threshold": 0.05,
        "latency_threshold_ms": 2000, "memory_threshold_mb": 512, "alert_for_secs": 120,
        "alert_emails": ["ops@example.com"]
    }));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(t.lag_bytes, 100_000);
    assert_eq!(t.lag_ms, 5000);
    assert_eq!(t.error_rate, 0.05);
    assert_eq!(t.latency_ms, 2000);
    assert_eq!(t.memory_bytes, Some(512 << 20));
    assert_eq!(t.alert_for, Duration::from_secs(120));
    assert_eq!(
        t.resolve_after,
        Duration::from_secs(120),
        "defaults to alert_for_secs"
    );
    let (t, bad) = Thresholds::from_config(&json!({
        "lag_threshold": "lots", "error_rate_threshold": 3, "resolve_after_secs": 10
    }));
    assert_eq!(t.lag_bytes, DEFAULT_LAG_BYTES);
    assert_eq!(t.error_rate, DEFAULT_ERROR_RATE);
    assert_eq!(t.resolve_after, Duration::from_secs(10));
    assert_eq!(bad.len(), 2, "{bad:?}");
    // A config that is not an object is all defaults.
    assert_eq!(
        Thresholds::from_config(&Json::Null).0,
        Thresholds::default()
    );
}

#[test]
fn health_follows_state_lag_and_errors() {
    let t = Thresholds {
        lag_bytes: 1000,
        lag_ms: 100,
        ..Thresholds::default()
    };
    let h = |run, o: &Observed| health(run, o, &t);
    assert_eq!(h(Run::Starting, &lagging(0)), HealthStatus::Unknown);
    assert_eq!(h(Run::Stopped, &lagging(0)), HealthStatus::Unknown);
    assert_eq!(h(Run::Failed, &lagging(0)), HealthStatus::Unhealthy);
    assert_eq!(h(Run::Retrying, &lagging(0)), HealthStatus::Unhealthy);
    assert_eq!(h(Run::Running, &lagging(1000)), HealthStatus::Healthy);
    assert_eq!(h(Run::Running, &lagging(1001)), HealthStatus::Degraded);
    assert_eq!(h(Run::Running, &lagging(10_001)), HealthStatus::Unhealthy);
    // Lag does not count once the copy completed.
    assert_eq!(h(Run::Completed, &lagging(50_000)), HealthStatus::Healthy);
    let slow = Observed {
        lag_ms: Some(101),
        ..lagging(0)
    };
    assert_eq!(h(Run::Running, &slow), HealthStatus::Degraded);
    // One error in 1000 records: a few errors. Two in 100: too many.
    let few = Observed {
        errors: 1,
        records: 999,
        ..lagging(0)
    };
    assert_eq!(h(Run::Running, &few), HealthStatus::Degraded);
    let many = Observed {
        errors: 2,
        records: 98,
        ..lagging(0)
    };
    assert_eq!(h(Run::Running, &many), HealthStatus::Unhealthy);
    assert_eq!(
        h(Run::Running, &Observed::default()),
        HealthStatus::Healthy,
        "nothing measured yet, nothing wrong"
    );
}

fn check_of(run: Run, o: &Observed, t: &Thresholds, kind: AlertType) -> Check {
    checks(run, o, t)
        .into_iter()
        .find(|c| c.kind == kind)
        .unwrap()
}

#[test]
fn checks_judge_each_condition_and_abstain_when_they_cannot() {
    let t = Thresholds {
        lag_bytes: 1000,
        memory_bytes: Some(1 << 30),
        ..Thresholds::default()
    };
    let c = check_of(Run::Running, &lagging(5000), &t, AlertType::HighLag);
    assert_eq!(c.breached, Some(true));
    assert_eq!(
        (c.metric, c.value, c.threshold),
        ("consumer_lag", 5000.0, 1000.0)
    );
    let c = check_of(Run::Stopped, &lagging(5000), &t, AlertType::HighLag);
    assert_eq!(c.breached, None, "a stopped task's lag is not judged");
    let c = check_of(Run::Completed, &lagging(5000), &t, AlertType::HighLag);
    assert_eq!(c.breached, Some(false));
    let slow = Observed {
        lag_ms: Some(60_000),
        ..lagging(10)
    };
    let c = check_of(Run::Running, &slow, &t, AlertType::HighLag);
    assert_eq!(
        (c.breached, c.metric, c.unit),
        (Some(true), "time_lag", "ms")
    );
    let c = check_of(Run::Failed, &lagging(0), &t, AlertType::ConnectorFailed);
    assert_eq!(c.breached, Some(true));
    let idle = check_of(Run::Running, &lagging(0), &t, AlertType::HighLatency);
    assert_eq!(idle.breached, Some(false), "no commit, no latency");
    let hot = Observed {
        p99_ms: Some(31_000.0),
        ..lagging(0)
    };
    let c = check_of(Run::Running, &hot, &t, AlertType::HighLatency);
    assert_eq!((c.breached, c.value), (Some(true), 31_000.0));
    let fat = Observed {
        rss_bytes: Some(2 << 30),
        ..lagging(0)
    };
    let c = check_of(Run::Stopped, &fat, &t, AlertType::ResourceExhausted);
    assert_eq!((c.breached, c.metric), (Some(true), "process_rss"));
    let blocked = Observed {
        blocked: 0.99,
        rss_bytes: Some(1),
        ..lagging(0)
    };
    let c = check_of(Run::Running, &blocked, &t, AlertType::ResourceExhausted);
    assert_eq!((c.breached, c.metric), (Some(true), "backpressure_blocked"));
    let c = check_of(Run::Running, &lagging(0), &t, AlertType::ResourceExhausted);
    assert_eq!(c.breached, Some(false));
    let errors = Observed {
        errors: 3,
        records: 7,
        ..lagging(0)
    };
    let c = check_of(Run::Running, &errors, &t, AlertType::HighErrorRate);
    assert_eq!((c.breached, c.value), (Some(true), 0.3));
}

/// Runs the tracker over (seconds, lag bytes) points, confirming every
/// decision; returns (seconds, decision kind) pairs.
fn run(tr: &mut AlertTracker, t: &Thresholds, points: &[(i64, u64)]) -> Vec<(i64, &'static str)> {
    let mut out = Vec::new();
    for (s, lag) in points {
        let checks = checks(Run::Running, &lagging(*lag), t);
        for d in tr.evaluate(at(*s), &checks, t) {
            match d {
                Decision::Open { check, .. } => {
                    tr.opened(check.kind, at(*s));
                    out.push((*s, "open"));
                }
                Decision::Resolve { check, .. } => {
                    tr.resolved(check.kind);
                    out.push((*s, "resolve"));
                }
            }
        }
    }
    out
}

#[test]
fn an_alert_opens_after_the_hold_time_once_and_resolves_after_clearing() {
    let t = Thresholds {
        lag_bytes: 1000,
        ..Thresholds::default()
    };
    let mut tr = AlertTracker::default();
    let got = run(
        &mut tr,
        &t,
        &[
            (0, 10),
            (60, 5000),
            (90, 5000),
            (120, 5000),
            (180, 5000),
            (240, 10),
            (270, 5000),
        ],
    );
    // Breached from 60: held 60 s at 120; clear at 240 but back at 270: still open.
    assert_eq!(got, vec![(120, "open")]);
    assert!(tr.is_open(AlertType::HighLag));
    let got = run(&mut tr, &t, &[(300, 10), (330, 10), (360, 10), (420, 5000)]);
    assert_eq!(got, vec![(360, "resolve")]);
    // A blip shorter than the hold time opens nothing.
    let got = run(
        &mut tr,
        &t,
        &[(450, 10), (480, 5000), (500, 10), (560, 5000), (600, 10)],
    );
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn a_failed_task_alerts_at_once_and_unwritten_decisions_are_made_again() {
    let t = Thresholds::default();
    let mut tr = AlertTracker::default();
    let o = lagging(0);
    let d = tr.evaluate(at(0), &checks(Run::Failed, &o, &t), &t);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].kind(), AlertType::ConnectorFailed);
    // Not confirmed (database down): decided again next window.
    let d = tr.evaluate(at(60), &checks(Run::Failed, &o, &t), &t);
    assert!(matches!(&d[..], [Decision::Open { held, .. }] if *held == Duration::from_secs(60)));
    tr.opened(AlertType::ConnectorFailed, at(60));
    assert!(tr
        .evaluate(at(120), &checks(Run::Failed, &o, &t), &t)
        .is_empty());
    // Running again: resolved after resolve_after; an unwritten resolve repeats.
    assert!(tr
        .evaluate(at(180), &checks(Run::Running, &o, &t), &t)
        .is_empty());
    let d = tr.evaluate(at(240), &checks(Run::Running, &o, &t), &t);
    assert!(matches!(&d[..], [Decision::Resolve { clear_for, .. }] if clear_for.as_secs() == 60));
    let d = tr.evaluate(at(300), &checks(Run::Running, &o, &t), &t);
    assert_eq!(d.len(), 1);
    tr.resolved(AlertType::ConnectorFailed);
    assert!(tr
        .evaluate(at(360), &checks(Run::Running, &o, &t), &t)
        .is_empty());
}

#[test]
fn unknown_conditions_keep_their_state_and_the_database_is_the_truth() {
    let t = Thresholds {
        lag_bytes: 1000,
        ..Thresholds::default()
    };
    let mut tr = AlertTracker::default();
    // Pending, then the task stops for a while (lag not judged), then lags on.
    tr.evaluate(at(0), &checks(Run::Running, &lagging(5000), &t), &t);
    assert!(tr
        .evaluate(at(30), &checks(Run::Stopped, &lagging(5000), &t), &t)
        .is_empty());
    let d = tr.evaluate(at(60), &checks(Run::Running, &lagging(5000), &t), &t);
    assert_eq!(d.len(), 1);
    // Opened by the previous owner of the task: adopted, then resolved when clear.
    let mut tr = AlertTracker::default();
    tr.sync(&[AlertType::HighLag], at(0));
    assert!(tr.is_open(AlertType::HighLag));
    tr.evaluate(at(0), &checks(Run::Running, &lagging(0), &t), &t);
    let d = tr.evaluate(at(60), &checks(Run::Running, &lagging(0), &t), &t);
    assert!(matches!(&d[..], [Decision::Resolve { .. }]));
    // Closed by an operator while it still holds: not reopened until it clears.
    let mut tr = AlertTracker::default();
    tr.opened(AlertType::HighLag, at(0));
    tr.sync(&[], at(10));
    assert!(!tr.is_open(AlertType::HighLag));
    let lag = checks(Run::Running, &lagging(5000), &t);
    assert!(tr.evaluate(at(100), &lag, &t).is_empty());
    assert!(tr.evaluate(at(500), &lag, &t).is_empty());
    tr.evaluate(at(560), &checks(Run::Running, &lagging(0), &t), &t);
    tr.evaluate(at(600), &lag, &t);
    assert_eq!(tr.evaluate(at(660), &lag, &t).len(), 1);
}

#[test]
fn alert_rows_are_readable_and_carry_value_threshold_and_duration() {
    let t = Thresholds {
        lag_bytes: 100_000,
        ..Thresholds::default()
    };
    let o = lagging(2_500_000);
    let c = check_of(Run::Running, &o, &t, AlertType::HighLag);
    let a = new_alert(Uuid::nil(), "orders", &c, Duration::from_secs(120), &o);
    assert_eq!(a.title, "High replication lag on task orders");
    assert!(a.message.contains("2500000 bytes behind"), "{}", a.message);
    assert!(
        a.message.contains("threshold 100000 bytes"),
        "{}",
        a.message
    );
    assert_eq!(a.details["current_value"], json!(2_500_000.0));
    assert_eq!(a.details["threshold"], json!(100_000.0));
    assert_eq!(a.details["duration_seconds"], json!(120));
    let failed = Observed {
        error_kind: Some("target_definite"),
        ..o.clone()
    };
    let c = check_of(Run::Failed, &failed, &t, AlertType::ConnectorFailed);
    let a = new_alert(Uuid::nil(), "orders", &c, Duration::ZERO, &failed);
    assert!(a.message.contains("target_definite error"), "{}", a.message);
    assert_eq!(a.details["error_kind"], json!("target_definite"));
    let note = resolution_note(&c, Duration::from_secs(60));
    assert!(note.starts_with("Cleared for 60 s"), "{note}");
}
