//! The Grafana dashboard (`dashboards/redisx.json`) and the Prometheus alert rules
//! (`dashboards/alerts.yml`) against what the code exports. The metrics example
//! (`examples/metrics.rs`, its `app` and traffic as they are) runs over real HTTP on a Redis
//! server of its own, which gives every redisx metric family samples, and `/metrics` is
//! scraped over HTTP. Every metric a panel, a template variable or an alert queries must be in
//! the scrape, with every label it matches or groups by and every label value it matches
//! literally, and every redisx family of the scrape must be charted. The application's own
//! metrics share the registry and the endpoint. The last test shows that the check catches a
//! misspelled name, label or value.

// The example's `main` (and what only it uses) is not called here, and its `pub` items are
// public to the example's readers, not from this crate.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/metrics.rs"]
mod metrics;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use metrics::{OPENMETRICS, ShopMetrics, app, exercise, simulate_crashed_consumer};
use redisx::RedisX;
use redisx_tests::http::{client, serve};
use redisx_tests::{RedisServer, unique_prefix};

const DASHBOARD: &str = include_str!("../../dashboards/redisx.json");
const ALERTS: &str = include_str!("../../dashboards/alerts.yml");

/// Labels Prometheus adds to every series of a target (never in `/metrics` itself).
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Words of a query that are not metric names: aggregations, keywords, literals.
const PROMQL_WORDS: &str = "sum min max avg count stddev stdvar topk bottomk quantile \
    count_values group bool and or unless offset inf nan";

/// The keywords followed by a list of labels.
const GROUPINGS: &str = "by without on ignoring group_left group_right";

/// One sample: its labels and its value.
type Sample = (BTreeMap<String, String>, f64);

/// A parsed scrape: the families (`# TYPE` lines) and the samples of each series name.
#[derive(Debug, Default)]
struct Scrape {
    /// Family name (`redisx_commands`) to type (`counter`).
    families: BTreeMap<String, String>,
    /// Series name (`redisx_commands_total`, `.._bucket`) to its samples' labels and values.
    samples: BTreeMap<String, Vec<Sample>>,
}

impl Scrape {
    /// Parses the text format (`OpenMetrics`, as prometheus-client renders it).
    fn parse(text: &str) -> Self {
        let mut scrape = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
                scrape.families.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (name, mut rest) = line.split_at(line.find(['{', ' ']).expect("a name"));
                let mut labels = BTreeMap::new();
                if let Some(inner) = rest.strip_prefix('{') {
                    let (matchers, used) = parse_matchers(inner).expect("a label set");
                    labels = matchers.into_iter().map(|m| (m.label, m.value)).collect();
                    rest = &inner[used..];
                }
                let value = rest.split_whitespace().next().and_then(|v| v.parse().ok());
                let value = value.unwrap_or_else(|| panic!("a value: {line}"));
                let series = scrape.samples.entry(name.to_owned()).or_default();
                series.push((labels, value));
            }
        }
        scrape
    }

    /// The label names of the series `name`.
    fn labels(&self, name: &str) -> BTreeSet<&str> {
        let samples = self.samples.get(name).into_iter().flatten();
        samples
            .flat_map(|(l, _)| l.keys().map(String::as_str))
            .collect()
    }

    /// The values `label` takes in the series `name`.
    fn values(&self, name: &str, label: &str) -> BTreeSet<&str> {
        let samples = self.samples.get(name).into_iter().flatten();
        samples
            .filter_map(|(l, _)| l.get(label).map(String::as_str))
            .collect()
    }

    /// The sum of the samples a selector with `=` matchers picks (`name{label="value"}`),
    /// counts and gauges here: whole and not negative.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn total(&self, selector: &str) -> u64 {
        let q = Query::parse(selector).expect("a selector");
        let (name, matchers) = &q.selectors[0];
        let samples = self.samples.get(name).into_iter().flatten();
        let picked =
            samples.filter(|(l, _)| matchers.iter().all(|m| l.get(&m.label) == Some(&m.value)));
        picked.map(|(_, v)| v).sum::<f64>() as u64
    }

    /// The family a series belongs to: itself, or without its `_total`, `_bucket`, `_sum`
    /// or `_count`.
    fn family_of<'a>(&self, series: &'a str) -> Option<&'a str> {
        let bare = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| series.strip_suffix(s));
        std::iter::once(series)
            .chain(bare)
            .find(|f| self.families.contains_key(*f))
    }
}

/// A label matcher: `client="default"`, `status=~"busy|timeout"`.
#[derive(Debug, Clone, PartialEq)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// Parses the matchers after a `{` up to its `}`; returns them and the bytes read (the `}`
/// included); `None` when it is not a label set.
fn parse_matchers(s: &str) -> Option<(Vec<Matcher>, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let span = |i: &mut usize, ok: fn(u8) -> bool| -> Option<String> {
        let start = *i;
        while ok(*b.get(*i)?) {
            *i += 1;
        }
        Some(s[start..*i].to_owned())
    };
    loop {
        span(&mut i, |c| c.is_ascii_whitespace() || c == b',')?;
        if b[i] == b'}' {
            return Some((out, i + 1));
        }
        let label = span(&mut i, |c| c.is_ascii_alphanumeric() || c == b'_')?;
        span(&mut i, |c| c.is_ascii_whitespace())?;
        let op = span(&mut i, |c| matches!(c, b'=' | b'!' | b'~'))?;
        span(&mut i, |c| c.is_ascii_whitespace())?;
        let quote = *b.get(i)?;
        if label.is_empty() || op.is_empty() || !matches!(quote, b'"' | b'\'') {
            return None;
        }
        i += 1;
        let mut value = String::new();
        while *b.get(i)? != quote {
            // An escape keeps the escaped character (`\"` is `"`).
            i += usize::from(b[i] == b'\\');
            let c = s.get(i..)?.chars().next()?;
            value.push(c);
            i += c.len_utf8();
        }
        i += 1;
        out.push(Matcher { label, op, value });
    }
}

/// What a Prometheus query reads.
#[derive(Debug, Default)]
struct Query {
    /// Every metric selector: the name and its matchers.
    selectors: Vec<(String, Vec<Matcher>)>,
    /// Every label list (`by`, `without`, `on`, ...), with its keyword.
    groupings: Vec<(String, Vec<String>)>,
}

impl Query {
    /// Scans `expr`: an identifier is a grouping keyword, an aggregation or other keyword, a
    /// function (followed by `(`), a Grafana variable (after `$`), or else a metric name.
    /// Strings and range durations (`[5m]`, `[$__rate_interval]`) are skipped.
    fn parse(expr: &str) -> Result<Self, String> {
        let b = expr.as_bytes();
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        let mut q = Self::default();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'"' || c == b'\'' {
                i += expr[i + 1..].find(char::from(c)).ok_or("an open string")? + 2;
            } else if c == b'[' {
                i += expr[i..].find(']').ok_or("an open range")? + 1;
            } else if c == b'{' {
                return Err("a selector without a metric name".to_owned());
            } else if c == b'$' || c.is_ascii_digit() {
                // A variable, or a number (`0.99`, `1e3`).
                i += 1;
                while i < b.len() && (ident(b[i]) || b[i] == b'.') {
                    i += 1;
                }
            } else if ident(c) {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let rest = expr[i..].trim_start();
                let at = expr.len() - rest.len();
                if GROUPINGS.split(' ').any(|g| g == word) && rest.starts_with('(') {
                    let end = rest.find(')').ok_or("an open label list")?;
                    let labels = rest[1..end].split(',').map(str::trim);
                    let labels = labels.filter(|l| !l.is_empty()).map(str::to_owned);
                    q.groupings.push((word.to_owned(), labels.collect()));
                    i = at + end + 1;
                } else if PROMQL_WORDS.split_whitespace().any(|w| w == word)
                    || rest.starts_with('(')
                {
                    // An aggregation, a keyword or a function.
                } else if let Some(inner) = rest.strip_prefix('{') {
                    let (matchers, used) =
                        parse_matchers(inner).ok_or_else(|| format!("bad matchers of {word}"))?;
                    q.selectors.push((word.to_owned(), matchers));
                    i = at + 1 + used;
                } else {
                    q.selectors.push((word.to_owned(), Vec::new()));
                }
            } else {
                i += 1;
            }
        }
        Ok(q)
    }

    /// The metric names read.
    fn metrics(&self) -> BTreeSet<&str> {
        self.selectors.iter().map(|(m, _)| m.as_str()).collect()
    }
}

/// The values a matcher names literally: its value, or the words of a plain alternation
/// (`busy|timeout`); none for a real pattern (`CONN_.*`) or a Grafana variable.
fn literal_values(m: &Matcher) -> Vec<&str> {
    let word = |v: &str| !v.is_empty() && v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    match m.op.as_str() {
        _ if m.value.contains('$') => vec![],
        "=" | "!=" => vec![m.value.as_str()],
        _ if m.value.split('|').all(word) => m.value.split('|').collect(),
        _ => vec![],
    }
}

/// What is wrong with `expr` (queried by `origin`) against `scrape`: series not in it,
/// labels their series do not have, literal values those labels never take, and labels of
/// `labels_used` (an alert's `$labels.X`, a variable's `label_values`) the result lacks.
fn check(scrape: &Scrape, origin: &str, expr: &str, labels_used: &[&str]) -> Vec<String> {
    let q = match Query::parse(expr) {
        Ok(q) => q,
        Err(e) => return vec![format!("{origin}: cannot parse `{expr}`: {e}")],
    };
    let mut problems = Vec::new();
    if q.selectors.is_empty() {
        problems.push(format!("{origin}: `{expr}` reads no metric"));
    }
    let has = |series: &str, label: &str| {
        TARGET_LABELS.contains(&label) || scrape.labels(series).contains(label)
    };
    for (series, matchers) in &q.selectors {
        if !scrape.samples.contains_key(series) {
            problems.push(format!("{origin}: no series `{series}` in the scrape"));
            continue;
        }
        for m in matchers {
            if !has(series, &m.label) {
                problems.push(format!("{origin}: `{series}` has no label `{}`", m.label));
            } else if !TARGET_LABELS.contains(&m.label.as_str()) {
                let values = scrape.values(series, &m.label);
                for v in literal_values(m)
                    .into_iter()
                    .filter(|v| !values.contains(v))
                {
                    let l = &m.label;
                    problems.push(format!(
                        "{origin}: `{series}` never has {l}=\"{v}\" (it has {values:?})"
                    ));
                }
            }
        }
    }
    let known: Vec<&str> = q
        .metrics()
        .into_iter()
        .filter(|m| scrape.samples.contains_key(*m))
        .collect();
    for (keyword, labels) in &q.groupings {
        for (label, series) in labels
            .iter()
            .flat_map(|l| known.iter().map(move |s| (l, s)))
        {
            if !has(series, label) {
                problems.push(format!(
                    "{origin}: {keyword} ({label}), but `{series}` has no label `{label}`"
                ));
            }
        }
    }
    for label in labels_used {
        // Kept by every `by`, and on the series read.
        let by = q.groupings.iter().filter(|(k, _)| k == "by");
        let kept = by.into_iter().all(|(_, l)| l.iter().any(|x| x == label));
        if !kept || !known.iter().all(|s| has(s, label)) {
            problems.push(format!(
                "{origin}: uses the label `{label}`, which `{expr}` lacks"
            ));
        }
    }
    problems
}

/// The queries of a dashboard, as (origin, expression, labels used): every panel target's
/// `expr` (in rows too), and every template variable's `label_values(selector, label)`.
fn dashboard_queries(json: &serde_json::Value) -> Vec<(String, String, Vec<String>)> {
    fn panels(list: &serde_json::Value, out: &mut Vec<(String, String, Vec<String>)>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("a target's expr");
                out.push((format!("panel \"{title}\""), expr.to_owned(), vec![]));
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&json["panels"], &mut out);
    for var in json["templating"]["list"].as_array().into_iter().flatten() {
        let query = var["query"]["query"].as_str().or(var["query"].as_str());
        let args = query.and_then(|q| q.strip_prefix("label_values(")?.strip_suffix(')'));
        if let Some((selector, label)) = args.and_then(|a| a.rsplit_once(',')) {
            let origin = format!("variable ${}", var["name"].as_str().unwrap_or("?"));
            out.push((
                origin,
                selector.trim().to_owned(),
                vec![label.trim().to_owned()],
            ));
        }
    }
    out
}

/// The alerting rules of a rule file, read line by line (its documented shape: one
/// `key: value` per line, each `expr` on one line): each rule's keys and (unquoted) values.
fn alerts(yaml: &str) -> Vec<BTreeMap<String, String>> {
    let mut out: Vec<BTreeMap<String, String>> = Vec::new();
    for line in yaml.lines().map(str::trim) {
        let Some((key, value)) = line.trim_start_matches("- ").split_once(": ") else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if key == "alert" {
            out.push(BTreeMap::new());
        }
        if let Some(rule) = out.last_mut() {
            rule.insert(key.to_owned(), value.to_owned());
        }
    }
    out
}

/// The `X` of every `$labels.X` in `text`.
fn template_labels(text: &str) -> Vec<&str> {
    let labels = text.split("$labels.").skip(1);
    labels
        .map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
        })
        .collect()
}

/// Every problem of a dashboard and a rule file against `scrape`.
fn problems(scrape: &Scrape, dashboard: &str, rules: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(dashboard).expect("the dashboard is JSON");
    let mut problems = Vec::new();
    for (origin, expr, labels) in dashboard_queries(&json) {
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        problems.extend(check(scrape, &origin, &expr, &labels));
    }
    for rule in alerts(rules) {
        let text = |k: &str| rule.get(k).map_or("", String::as_str);
        let mut used = template_labels(text("summary"));
        used.extend(template_labels(text("description")));
        let origin = format!("alert {}", text("alert"));
        problems.extend(check(scrape, &origin, text("expr"), &used));
    }
    problems
}

/// A Redis server, the example's runtime on it, and its app served on loopback
/// (`payment_latency` per order).
async fn shop(test: &str, payment_latency: Duration) -> (RedisServer, RedisX, String) {
    let server = RedisServer::start();
    let rx = metrics::runtime(&server.url(), &unique_prefix(test))
        .await
        .unwrap();
    let shop = ShopMetrics::register(&rx.registry());
    let base = serve(app(rx.clone(), shop, payment_latency)).await;
    (server, rx, base)
}

/// `GET {base}/metrics`: its `Content-Type`, its text.
async fn scrape(c: &reqwest::Client, base: &str) -> (String, String) {
    let res = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
    (kind, res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_query_only_what_the_service_exports() {
    // Each order takes 1 s: a duplicate sent once the first is `processing` arrives while it runs.
    let (_server, rx, base) = shop("dashboard", Duration::from_secs(1)).await;
    simulate_crashed_consumer(&rx).await.unwrap();
    let consumer = metrics::start_fulfilment(&rx).await.unwrap();
    let c = client();
    Box::pin(exercise(&rx, &c, &base)).await.unwrap();
    let (kind, text) = scrape(&c, &base).await;
    assert_eq!(kind, OPENMETRICS);
    let scrape = Scrape::parse(&text);

    // The traffic reached every event the dashboard charts.
    for selector in [
        r#"redisx_commands_total{client="default"}"#,
        r#"redisx_commands_total{client="streams"}"#,
        r#"redisx_errors_total{client="default", error_type="OP_FAILED"}"#,
        "redisx_command_duration_seconds_count",
        r#"redisx_cache_hits_total{layer="l1"}"#,
        r#"redisx_cache_hits_total{layer="l2"}"#,
        r#"redisx_cache_misses_total{layer="l2"}"#,
        r#"redisx_cache_loads_total{status="ok"}"#,
        "redisx_cache_stampede_prevented_total",
        "redisx_cache_l1_entries",
        r#"redisx_lock_acquisitions_total{status="acquired"}"#,
        r#"redisx_lock_acquisitions_total{status="busy"}"#,
        r#"redisx_lock_acquisitions_total{status="timeout"}"#,
        "redisx_lock_lost_total",
        "redisx_lock_wait_duration_seconds_count",
        "redisx_lock_hold_duration_seconds_count",
        r#"redisx_ratelimit_requests_total{status="allowed"}"#,
        r#"redisx_ratelimit_requests_total{status="denied"}"#,
        r#"redisx_ratelimit_requests_total{status="local_deny"}"#,
        r#"redisx_idempotency_requests_total{status="new"}"#,
        r#"redisx_idempotency_requests_total{status="replay"}"#,
        "redisx_idempotency_wait_seconds_count",
        "redisx_idempotency_duration_seconds_count",
        r#"redisx_stream_messages_published_total{stream="orders"}"#,
        r#"redisx_stream_messages_consumed_total{group="fulfilment", status="success"}"#,
        r#"redisx_stream_messages_consumed_total{group="fulfilment", status="retry"}"#,
        r#"redisx_stream_messages_consumed_total{group="fulfilment", status="dead_letter"}"#,
        "redisx_stream_processing_duration_seconds_count",
        "redisx_stream_publish_duration_seconds_count",
        r#"redisx_stream_trimmed_pending_total{stream="orders", group="fulfilment"}"#,
    ] {
        assert!(scrape.total(selector) >= 1, "nothing for {selector}");
    }
    // orders/fulfilment, read at the scrape: everything was delivered.
    let lag = &scrape.samples["redisx_stream_lag"];
    assert!(lag.len() == 1 && lag[0].1 == 0.0, "{lag:?}");
    // The application's metrics, in the same scrape.
    let placed = scrape.total(r#"shop_order_requests_total{outcome="placed"}"#);
    let replayed = scrape.total(r#"shop_order_requests_total{outcome="replayed"}"#);
    let limited = scrape.total(r#"shop_order_requests_total{outcome="rate_limited"}"#);
    assert_eq!([placed, replayed, limited], [3, 2, 2]);
    assert_eq!(scrape.total("shop_order_duration_seconds_count"), 7);

    // The point: nothing queried is missing, and no redisx family is left out.
    let mut problems = problems(&scrape, DASHBOARD, ALERTS);
    let json: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let queries = dashboard_queries(&json);
    let charted: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, e, _)| Query::parse(e).unwrap_or_default().selectors)
        .filter(|(series, _)| scrape.samples.contains_key(series))
        .filter_map(|(series, _)| scrape.family_of(&series).map(str::to_owned))
        .collect();
    let families: Vec<&String> = scrape
        .families
        .keys()
        .filter(|f| f.starts_with("redisx_"))
        .collect();
    let sampled: BTreeSet<&str> = scrape
        .samples
        .keys()
        .filter_map(|s| scrape.family_of(s))
        .collect();
    for family in &families {
        if !sampled.contains(family.as_str()) {
            problems.push(format!("{family} has no samples after the traffic"));
        }
        if !charted.contains(*family) {
            problems.push(format!("the dashboard charts no series of {family}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(families.len() >= 29, "{families:?}");
    assert!(queries.len() >= 30, "{} dashboard queries", queries.len());
    consumer.stop().await;
    rx.shutdown().await;
}

#[test]
fn every_alert_has_an_expression_a_duration_a_severity_and_annotations() {
    let rules = alerts(ALERTS);
    assert!(rules.len() >= 15, "{} alerts", rules.len());
    let mut names = BTreeSet::new();
    for rule in &rules {
        let text = |k: &str| rule.get(k).map_or("", String::as_str);
        let name = text("alert");
        assert!(
            name.starts_with("Redisx") && names.insert(name),
            "{name}: a new Redisx name"
        );
        assert!(!text("expr").is_empty(), "{name}: no expr");
        assert!(
            text("for").ends_with(['s', 'm']),
            "{name}: for {:?}",
            text("for")
        );
        let severity = text("severity");
        assert!(
            ["info", "warning", "critical"].contains(&severity),
            "{name}: {severity:?}"
        );
        assert!(
            !text("summary").is_empty() && !text("description").is_empty(),
            "{name}"
        );
    }
    // Only lines of the shape `alerts` reads: a key it does not know would go unchecked.
    let known = "groups:|- name:|rules:|- alert:|expr:|for:|labels:|severity:|annotations:|\
        summary:|description:";
    for line in ALERTS.lines().map(str::trim) {
        let ok = line.is_empty()
            || line.starts_with('#')
            || known.split('|').any(|k| line.starts_with(k));
        assert!(ok, "an unexpected line in alerts.yml: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metrics_share_the_registry_and_the_endpoint() {
    let (_server, rx, base) = shop("dashboard_custom", Duration::ZERO).await;
    let c = client();
    let order = r#"{"customer":"dan","sku":"mug","quantity":2}"#;
    let url = format!("{base}/orders");
    let placed = c.post(&url).header("idempotency-key", "d-1").body(order);
    assert_eq!(placed.send().await.unwrap().status(), 201);
    let missing = c.post(&url).body(order).send().await.unwrap();
    assert_eq!(missing.status(), 400, "the key is required");

    let (_, text) = scrape(&c, &base).await;
    assert!(text.ends_with("# EOF\n"), "one exposition, rendered once");
    let scrape = Scrape::parse(&text);
    assert_eq!(scrape.families["shop_order_requests"], "counter");
    assert_eq!(scrape.families["shop_order_duration_seconds"], "histogram");
    let outcome = |o: &str| scrape.total(&format!("shop_order_requests_total{{outcome=\"{o}\"}}"));
    let outcomes = ["placed", "rejected", "replayed"].map(outcome);
    assert_eq!(
        outcomes,
        [1, 1, 0],
        "every outcome is a series from the start"
    );
    assert_eq!(scrape.total("shop_order_duration_seconds_count"), 2);
    // Beside the runtime's own, which saw the order's work.
    assert_eq!(
        scrape.total(r#"redisx_idempotency_requests_total{status="new"}"#),
        1
    );
    assert_eq!(scrape.total("redisx_stream_messages_published_total"), 1);
    rx.shutdown().await;
}

#[test]
fn the_check_catches_a_misspelled_name_label_or_value() {
    let scrape = Scrape::parse(concat!(
        "# TYPE redisx_commands counter\n",
        "redisx_commands_total{command=\"GET\",client=\"default\",status=\"ok\"} 3\n",
        "redisx_commands_total{command=\"GET\",client=\"default\",status=\"error\"} 1\n",
        "# TYPE redisx_command_duration_seconds histogram\n",
        "redisx_command_duration_seconds_bucket{command=\"GET\",client=\"default\",le=\"0.1\"} 4\n",
        "# EOF\n",
    ));
    for expr in [
        r#"sum by (client) (rate(redisx_commands_total{job=~"$job", status="error"}[5m]))"#,
        r#"histogram_quantile(0.99, sum by (le, client) (rate(redisx_command_duration_seconds_bucket{client=~"$client"}[$__rate_interval])))"#,
        r#"sum(rate(redisx_commands_total{status=~"ok|error", command=~"G.*"}[5m])) > 0.5"#,
    ] {
        assert_eq!(
            check(&scrape, "ok", expr, &[]),
            Vec::<String>::new(),
            "{expr}"
        );
    }
    // Each line: an expression, ` -> `, and what the report says.
    let wrong = r#"rate(redisx_comands_total[5m]) -> no series `redisx_comands_total`
        rate(redisx_command_duration_seconds[5m]) -> no series `redisx_command_duration_seconds`
        rate(redisx_commands_total{clinet="default"}[5m]) -> no label `clinet`
        rate(redisx_commands_total{status="eror"}[5m]) -> never has status="eror"
        rate(redisx_commands_total{status=~"ok|failed"}[5m]) -> never has status="failed"
        sum by (error_type) (rate(redisx_commands_total[5m])) -> by (error_type)
        sum(rate(redisx_commands_total[5m])) by (client -> cannot parse"#;
    for (expr, expected) in wrong.lines().filter_map(|l| l.trim().split_once(" -> ")) {
        let found = check(&scrape, "wrong", expr, &[]);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{expr}: {found:?}"
        );
    }
    let expr = "sum by (client) (rate(redisx_commands_total[5m])) > 0";
    let found = check(&scrape, "alert", expr, &["command"]);
    assert!(found[0].contains("the label `command`"), "{found:?}");

    // Through the files' shapes: a row's panel, a variable, a rule.
    let dashboard = r#"{"panels": [{"title": "Row", "panels": [{"title": "Rate", "targets": [{"expr": "rate(redisx_commands_totl[5m])"}]}]}],
        "templating": {"list": [{"name": "client", "query": {"query": "label_values(redisx_commands_total, clients)"}}]}}"#;
    let found = problems(&scrape, dashboard, "");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("panel \"Rate\"") && found[0].contains("redisx_commands_totl"));
    assert!(found[1].starts_with("variable $client") && found[1].contains("`clients`"));
    let rules = "groups:\n  - name: g\n    rules:\n      - alert: RedisxX\n        expr: rate(redisx_commands_total{status=\"oops\"}[5m]) > 0\n";
    let found = problems(&scrape, "{}", rules);
    assert!(
        found.len() == 1 && found[0].starts_with("alert RedisxX: "),
        "{found:?}"
    );
}
