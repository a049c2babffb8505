//! The operator files shipped with the repo stay true to what an edge exports: every metric
//! the Grafana dashboard and the alert rules query exists in a real edge's `/metrics`.

use std::collections::BTreeSet;

use crate::support::{TestApp, TestDb};

/// Metric names (`auto_order_*`, `http_*`) in a PromQL expression, histogram suffixes
/// stripped to the family's name as exported (`_bucket` stays: it is a series name).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if (word.starts_with("auto_order_") || word.starts_with("http_")) && c != '=' {
            names.insert(std::mem::take(&mut word));
        }
        word.clear();
    }
    names
}

fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/auto-order-edge.json"
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

fn alert_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/alerts.yml"
    ))
    .unwrap();
    // `expr:` values, folded (`>-`) over the indented lines that follow.
    let mut exprs = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, rest)) = line.split_once("expr:") else {
            continue;
        };
        let mut expr = rest.trim().trim_start_matches(">-").to_owned();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent.len();
            if !deeper || next.trim().is_empty() {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        exprs.push(expr);
    }
    exprs
}

/// `/metrics` of an edge that has served requests, applied a change and rate-limited
/// someone (so every family has a series), and the edge.
async fn busy_edge_metrics(db: &TestDb) -> (TestApp, String) {
    let app = TestApp::spawn_with(&db.url, &[("RATE_LIMIT_MAX", "3")]).await;
    db.client
        .execute(
            "insert into products (owner_id, name) values ('u', 'milk')",
            &[],
        )
        .await
        .unwrap();
    app.catch_up(db).await;
    for _ in 0..5 {
        app.http
            .get(app.url("/api/reorders"))
            .bearer_auth(app.token("u", &[]))
            .send()
            .await
            .unwrap();
    }
    let exported = app.metrics_text().await;
    (app, exported)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_query_is_exported() {
    // Arrange + Act
    let db = TestDb::new().await;
    let (app, exported) = busy_edge_metrics(&db).await;

    // Assert
    let exprs: Vec<String> = dashboard_exprs().into_iter().chain(alert_exprs()).collect();
    assert!(exprs.len() >= 20, "found only {} expressions", exprs.len());
    let queried: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| {
            !exported
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        })
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    app.stop().await;
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"sum by (route) (rate(http_requests_total{status=~"5.."}[5m])) / auto_order_x_seconds > 1"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["auto_order_x_seconds", "http_requests_total"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_pass_promtool_check_metrics() {
    // `promtool` comes from Debian's prometheus package (.ci/run installs it).
    let Ok(promtool) = which_promtool() else {
        panic!("promtool is not installed (apt-get install prometheus)");
    };
    // Arrange
    let db = TestDb::new().await;
    let (app, exported) = busy_edge_metrics(&db).await;

    // Act
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exported.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();

    // Assert: no problems (every family has HELP, units by convention).
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && report.trim().is_empty(), "{report}");
    assert!(exported.contains("# HELP auto_order_sync_forks_total"));
    app.stop().await;
}

fn which_promtool() -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("promtool"))
                .find(|p| p.exists())
        })
        .ok_or(())
}
