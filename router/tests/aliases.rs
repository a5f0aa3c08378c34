//! Aliases end to end: a router on a static catalog whose alias `live` runs version 1 and sends a
//! tenth of the invocations to version 2, each version one real sidecar with the Rust fixture
//! function. The split follows the weight, and every answer names the version that ran.

mod common;

use common::*;

const INVOCATIONS: usize = 2_000;
const WEIGHT: f64 = 0.1;

/// The sum of the samples of `lmi_router_invocations_total` that carry every label in `labels`.
fn invocations(port: u16, labels: &[&str]) -> f64 {
    let page = http("GET", port, "/metrics", &[], b"").expect("metrics");
    String::from_utf8_lossy(&page.body)
        .lines()
        .filter(|l| l.starts_with("lmi_router_invocations_total{"))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[test]
fn an_alias_splits_invocations_by_weight_and_reports_the_version_that_ran() {
    let f = example("fixture_fn").display().to_string();
    let ee1 = start_ee("alias-ee-v1", 8, 10.0, &[&f], None, &[]);
    let ee2 = start_ee("alias-ee-v2", 8, 10.0, &[&f], None, &[]);
    let r = start_router_on(
        "alias-router",
        &alias_catalog(ee1.port, ee2.port, WEIGHT),
        &[],
    );

    let mut ran = [0usize; 3];
    for _ in 0..INVOCATIONS {
        let resp = invoke(r.port, "hello:live", r#"{"noEcho": true}"#);
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let version = resp
            .header("x-amz-executed-version")
            .expect("X-Amz-Executed-Version");
        let ee = resp.json()["ee"].as_str().expect("ee").to_string();
        assert_eq!(ee, format!("alias-ee-v{version}"), "the EE that answered");
        ran[version.parse::<usize>().expect("a version number")] += 1;
    }
    let share = ran[2] as f64 / INVOCATIONS as f64;
    assert!(
        (share - WEIGHT).abs() <= 0.03,
        "version 2 ran {share:.3} of the invocations, {ran:?}"
    );
    assert_eq!(ran[1] + ran[2], INVOCATIONS);

    // The metric counts by the version that ran and the alias invoked.
    let by = |version: &str| {
        invocations(
            r.port,
            &[
                r#"function_namespace="default""#,
                r#"function="hello""#,
                r#"alias="live""#,
                &format!(r#"version="{version}""#),
                r#"result="Success""#,
            ],
        )
    };
    assert_eq!(by("1") as usize, ran[1]);
    assert_eq!(by("2") as usize, ran[2]);

    // The same alias as a ?Qualifier= and in an ARN.
    let q = http(
        "POST",
        r.port,
        "/2015-03-31/functions/hello/invocations?Qualifier=live",
        &[],
        b"{}",
    )
    .expect("invoke");
    assert_eq!(q.status, 200);
    let arn = invoke(
        r.port,
        "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ahello%3Alive",
        "{}",
    );
    assert_eq!(arn.status, 200, "{}", String::from_utf8_lossy(&arn.body));

    // An alias of a version that cannot run answers as that version would; an alias of a missing
    // version, or no such alias, is "not found" naming the alias's ARN.
    let next = invoke(r.port, "hello:next", "{}");
    assert_eq!(next.status, 502);
    assert!(
        next.header("x-amzn-errortype")
            .is_some_and(|t| t.starts_with("ResourceNotReadyException"))
    );
    for missing in ["gone", "nope"] {
        let resp = invoke(r.port, &format!("hello:{missing}"), "{}");
        assert_eq!(resp.status, 404);
        let message = resp.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.ends_with(&format!(":function:hello:{missing}")),
            "{message}"
        );
    }
}

/// Moving an alias under load (a release: `live` from version 1 to 2) fails no invocation: at 500
/// invocations a second, every answer is a success from the version the alias named at that
/// moment, and once the move is seen only version 2 runs.
#[test]
fn moving_an_alias_under_load_fails_no_invocation() {
    let f = example("fixture_fn").display().to_string();
    let ee1 = start_ee("move-ee-v1", 16, 10.0, &[&f], None, &[]);
    let ee2 = start_ee("move-ee-v2", 16, 10.0, &[&f], None, &[]);
    let catalog = |version: u32| {
        format!(
            r#"functions:
  - name: hello
    versions:
      - {{version: 1, timeoutSeconds: 10, endpoints: ["127.0.0.1:{}"]}}
      - {{version: 2, timeoutSeconds: 10, endpoints: ["127.0.0.1:{}"]}}
    aliases:
      - {{name: live, version: {version}}}
"#,
            ee1.port, ee2.port
        )
    };
    let r = start_router_on("move-router", &catalog(1), &[]);
    const CALLERS: usize = 10;
    // 10 callers, one call each 20 ms: 500 a second.
    const PERIOD: std::time::Duration = std::time::Duration::from_millis(20);
    const RUN: std::time::Duration = std::time::Duration::from_secs(8);
    let started = std::time::Instant::now();
    let port = r.port;
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while started.elapsed() < RUN {
                    let at = started.elapsed();
                    let resp = invoke(port, "hello:live", r#"{"noEcho": true}"#);
                    let version = resp
                        .header("x-amz-executed-version")
                        .unwrap_or("-")
                        .to_string();
                    seen.push((at, resp.status, version));
                    std::thread::sleep(PERIOD.saturating_sub(started.elapsed() - at));
                }
                seen
            })
        })
        .collect();
    // The move, two seconds in (the router reads its static catalog again within a second; the
    // cluster source moves on the FunctionAlias watch the same way).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let moved_at = started.elapsed();
    std::fs::write(&r.catalog, catalog(2)).expect("move the alias");
    let seen: Vec<_> = callers
        .into_iter()
        .flat_map(|c| c.join().expect("caller"))
        .collect();
    let failed: Vec<_> = seen
        .iter()
        .filter(|(_, status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        seen.len() >= 2_000,
        "only {} invocations in {RUN:?}",
        seen.len()
    );
    let before: Vec<_> = seen.iter().filter(|(at, _, _)| *at < moved_at).collect();
    assert!(
        before.iter().all(|(_, _, v)| v == "1"),
        "before the move only version 1 runs"
    );
    let settled = moved_at + std::time::Duration::from_secs(3);
    let after: Vec<_> = seen.iter().filter(|(at, _, _)| *at > settled).collect();
    assert!(
        !after.is_empty() && after.iter().all(|(_, _, v)| v == "2"),
        "after the move only version 2 runs"
    );
}
