//! The deployment material in `deploy/` is consistent with the code, without a broker, a
//! Docker engine or a cluster: every YAML and JSON file parses; alert rules and the dashboard
//! use only metric names the worker exports; every alert carries a severity and a runbook;
//! the compose file and the kustomization point at files that exist; the configurations they
//! ship load with the worker's own loader; Kubernetes gives the worker more time to stop than
//! its shutdown grace.
//!
//! Every test collects all problems before failing, and names the file and the offender.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mensajero::config::Config;
use mensajero::metrics::NAMES;
use serde::Deserialize;
use serde_yaml::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

/// A path as the failure messages show it: relative to the repository root.
fn shown(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", shown(path)))
}

/// Every file under `dir` whose name ends with one of `extensions`, sorted.
fn files_under(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", shown(&dir)));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every document of a (possibly multi-document) YAML file, with `<<` merge keys applied.
fn yaml_documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = read(path);
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let mut value = Value::deserialize(doc)
            .map_err(|e| format!("{} (document {}): {e}", shown(path), i + 1))?;
        value
            .apply_merge()
            .map_err(|e| format!("{} (document {}): merge keys: {e}", shown(path), i + 1))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The single document of a YAML file (panics, naming the file, if it does not parse).
fn yaml(path: &Path) -> Value {
    let mut docs = yaml_documents(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(docs.len(), 1, "{}: expected one YAML document", shown(path));
    docs.remove(0)
}

/// Panic with every problem, one per line, if there are any.
fn assert_none(problems: Vec<String>, what: &str) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(*key))
        .and_then(Value::as_str)
}

#[test]
fn every_yaml_and_json_file_under_deploy_parses() {
    let yamls = files_under(&deploy(), &["yml", "yaml"]);
    let jsons = files_under(&deploy(), &["json"]);
    assert!(
        yamls.len() >= 10,
        "expected the compose, Prometheus, Grafana and Kubernetes YAML files under deploy/, found {yamls:?}"
    );
    assert!(
        !jsons.is_empty(),
        "expected the Grafana dashboard JSON under deploy/"
    );
    let mut problems = Vec::new();
    for path in &yamls {
        match yaml_documents(path) {
            Ok(docs) if docs.is_empty() => {
                problems.push(format!("{}: no YAML document", shown(path)))
            }
            Ok(_) => {}
            Err(e) => problems.push(e),
        }
    }
    for path in &jsons {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&read(path)) {
            problems.push(format!("{}: {e}", shown(path)));
        }
    }
    assert_none(problems, "deploy/ files that do not parse");
}

/// Every identifier that starts with `mensajero_` in `text`.
fn metric_identifiers(text: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("mensajero_") {
        if text[..at].chars().next_back().is_some_and(is_ident) {
            continue; // inside a longer identifier, e.g. `x_mensajero_…`
        }
        let end = text[at..]
            .find(|c: char| !is_ident(c))
            .map_or(text.len(), |n| at + n);
        found.insert(text[at..end].to_string());
    }
    found
}

/// Whether a metric identifier names a series the worker exports: a name of `NAMES`, or a
/// histogram's `_bucket` / `_sum` / `_count` series (counters, ending in `_total`, have none).
fn is_exported(identifier: &str) -> bool {
    NAMES.contains(&identifier)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            identifier
                .strip_suffix(suffix)
                .is_some_and(|base| NAMES.contains(&base) && !base.ends_with("_total"))
        })
}

/// A fresh worker, before any job or receipt, already exports every series the alerts and
/// the dashboard read: dashboards show 0, not "no data", and no alert expression names a
/// series that does not exist yet.
#[tokio::test]
async fn a_fresh_worker_exports_every_series_the_alerts_and_dashboard_use() {
    let (_core, gateway, _stop) =
        crate::common::start_gateway(mensajero::config::MockOptions::default()).await;
    let app = crate::common::TestApp::spawn(crate::common::config(
        &crate::common::unique_prefix("fresh-metrics"),
        &crate::common::gateway_channels(&gateway),
        crate::common::GATEWAY_ENV,
    ))
    .await;
    app.wait_ready().await;
    let text = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut missing = Vec::new();
    for path in [
        deploy().join("prometheus/alerts.yml"),
        deploy().join("grafana/mensajero.json"),
    ] {
        for name in metric_identifiers(&read(&path)) {
            // A histogram is named by its base name or one of its series; it exports all.
            let present = exported.contains(name.as_str())
                || exported.contains(format!("{name}_bucket").as_str());
            if !present {
                missing.push(format!("{}: `{name}`", shown(&path)));
            }
        }
    }
    assert_none(missing, "series a fresh worker does not export");
    // The failures series exist per configured channel and class, at 0.
    assert!(
        text.contains(
            "mensajero_failures_total{channel=\"waspy-ar\",class=\"retries_exhausted\",code=\"\"} 0"
        ),
        "{text}"
    );
}

#[test]
fn alerts_and_dashboard_use_only_exported_metric_names() {
    let mut problems = Vec::new();
    for path in [
        deploy().join("prometheus/alerts.yml"),
        deploy().join("grafana/mensajero.json"),
    ] {
        let identifiers = metric_identifiers(&read(&path));
        if identifiers.is_empty() {
            problems.push(format!(
                "{}: uses no mensajero_ metric at all",
                shown(&path)
            ));
        }
        for name in identifiers.iter().filter(|n| !is_exported(n)) {
            problems.push(format!(
                "{}: `{name}` is not exported (see mensajero::metrics::NAMES)",
                shown(&path)
            ));
        }
    }
    assert_none(problems, "unknown metric names");
}

#[test]
fn metric_identifier_scan_catches_unknown_names() {
    // The scan above proves something only if it can fail.
    let found = metric_identifiers(
        "rate(mensajero_outcomes_total[5m]) x_mensajero_skip mensajero_receipt_lag_seconds_bucket mensajero_nope",
    );
    let found: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(
        found,
        [
            "mensajero_nope",
            "mensajero_outcomes_total",
            "mensajero_receipt_lag_seconds_bucket"
        ]
    );
    assert!(is_exported("mensajero_receipt_lag_seconds_bucket"));
    assert!(is_exported(
        "mensajero_gateway_request_duration_seconds_count"
    ));
    assert!(!is_exported("mensajero_nope"));
    assert!(!is_exported("mensajero_outcomes_total_bucket"));
}

#[test]
fn every_alert_has_expr_severity_summary_and_runbook() {
    let path = deploy().join("prometheus/alerts.yml");
    let rules = yaml(&path);
    let groups = rules
        .get("groups")
        .and_then(Value::as_sequence)
        .unwrap_or_else(|| panic!("{}: no `groups` list", shown(&path)));
    let mut problems = Vec::new();
    let mut alerts = BTreeSet::new();
    for (g, group) in groups.iter().enumerate() {
        let rules = group.get("rules").and_then(Value::as_sequence);
        let Some(rules) = rules else {
            problems.push(format!("{}: group {g} has no `rules` list", shown(&path)));
            continue;
        };
        for (r, rule) in rules.iter().enumerate() {
            let Some(alert) = str_at(rule, &["alert"]) else {
                continue; // a recording rule
            };
            let name = format!("{}: alert {alert}", shown(&path));
            if !alerts.insert(alert.to_string()) {
                problems.push(format!("{name}: defined twice (rule {r})"));
            }
            if str_at(rule, &["expr"]).is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!("{name}: no `expr`"));
            }
            match str_at(rule, &["labels", "severity"]) {
                Some("critical" | "warning" | "info") => {}
                Some(other) => problems.push(format!(
                    "{name}: severity `{other}` (use critical, warning or info)"
                )),
                None => problems.push(format!("{name}: no `labels.severity`")),
            }
            if str_at(rule, &["annotations", "summary"]).is_none_or(|s| s.trim().is_empty()) {
                problems.push(format!("{name}: no `annotations.summary`"));
            }
            match str_at(rule, &["annotations", "runbook"]) {
                None => problems.push(format!("{name}: no `annotations.runbook`")),
                Some(runbook) if runbook.trim().is_empty() || runbook.trim().contains('\n') => {
                    problems.push(format!("{name}: `annotations.runbook` must be one line"))
                }
                Some(_) => {}
            }
        }
    }
    assert!(!alerts.is_empty(), "{}: no alerts", shown(&path));
    assert_none(problems, "incomplete alert rules");
}

/// The host side of a short-syntax volume (`./a:/b:ro`), when it is a path rather than a
/// named volume.
fn bind_source(volume: &Value) -> Option<String> {
    match volume {
        Value::String(short) => {
            let source = short.split(':').next().unwrap_or_default();
            (source.starts_with('.') || source.starts_with('/')).then(|| source.to_string())
        }
        long => (str_at(long, &["type"]) == Some("bind"))
            .then(|| str_at(long, &["source"]).map(str::to_string))
            .flatten(),
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|item| item.as_str().or_else(|| str_at(item, &["path"])))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn compose_file_points_at_files_that_exist() {
    let path = deploy().join("docker-compose.yml");
    let compose = yaml(&path);
    let services = compose
        .get("services")
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("{}: no `services`", shown(&path)));
    let named_volumes: BTreeSet<&str> = compose
        .get("volumes")
        .and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mut check = |service: &str, what: &str, relative: &str, dir: bool| {
        let target = deploy().join(relative);
        let ok = if dir {
            target.is_dir()
        } else {
            target.is_file()
        };
        if !ok {
            problems.push(format!(
                "{}: service {service}: {what} `{relative}` ({}) does not exist",
                shown(&path),
                shown(&target)
            ));
        }
    };
    let mut other = Vec::new();
    for (name, service) in services {
        let name = name.as_str().unwrap_or("?");
        match service.get("build") {
            Some(Value::String(context)) => check(name, "build context", context, true),
            Some(build) => {
                let context = str_at(build, &["context"]).unwrap_or(".");
                check(name, "build context", context, true);
                if let Some(dockerfile) = str_at(build, &["dockerfile"]) {
                    let relative = Path::new(context).join(dockerfile);
                    check(name, "dockerfile", &relative.to_string_lossy(), false);
                }
            }
            None => {
                if service.get("image").is_none() {
                    other.push(format!(
                        "{}: service {name}: neither build nor image",
                        shown(&path)
                    ));
                }
            }
        }
        for volume in service
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if let Some(source) = bind_source(volume) {
                // A bind mount of a missing path makes Docker create an empty directory.
                let target = deploy().join(source.trim_start_matches("./"));
                if !target.exists() {
                    other.push(format!(
                        "{}: service {name}: bind-mount source `{source}` ({}) does not exist",
                        shown(&path),
                        shown(&target)
                    ));
                }
            } else if let Some(short) = volume.as_str() {
                let volume_name = short.split(':').next().unwrap_or_default();
                if !named_volumes.contains(volume_name) {
                    other.push(format!(
                        "{}: service {name}: volume `{volume_name}` is not declared under top-level `volumes`",
                        shown(&path)
                    ));
                }
            }
        }
        for env_file in string_list(service.get("env_file")) {
            check(name, "env_file", &env_file, false);
        }
        // `condition: service_healthy` waits forever on a service without a health check.
        if let Some(depends) = service.get("depends_on").and_then(Value::as_mapping) {
            for (dependency, condition) in depends {
                let dependency = dependency.as_str().unwrap_or("?");
                match services.get(dependency) {
                    None => other.push(format!(
                        "{}: service {name} depends on unknown service {dependency}",
                        shown(&path)
                    )),
                    Some(target)
                        if str_at(condition, &["condition"]) == Some("service_healthy")
                            && target.get("healthcheck").is_none() =>
                    {
                        other.push(format!(
                            "{}: service {name} waits for {dependency} to be healthy, which has no healthcheck",
                            shown(&path)
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    problems.extend(other);
    assert_none(problems, "docker compose references");
}

#[test]
fn kustomization_resources_exist_and_are_kubernetes_objects() {
    let dir = deploy().join("kubernetes");
    let path = dir.join("kustomization.yaml");
    let kustomization = yaml(&path);
    let resources = string_list(kustomization.get("resources"));
    assert!(!resources.is_empty(), "{}: no `resources`", shown(&path));
    let mut problems = Vec::new();
    for resource in &resources {
        let file = dir.join(resource);
        if !file.is_file() {
            problems.push(format!(
                "{}: resource `{resource}` ({}) does not exist",
                shown(&path),
                shown(&file)
            ));
            continue;
        }
        match yaml_documents(&file) {
            Err(e) => problems.push(e),
            Ok(docs) => {
                for doc in docs {
                    if str_at(&doc, &["apiVersion"]).is_none()
                        || str_at(&doc, &["kind"]).is_none()
                        || str_at(&doc, &["metadata", "name"]).is_none()
                    {
                        problems.push(format!(
                            "{}: a document without apiVersion, kind or metadata.name",
                            shown(&file)
                        ));
                    }
                }
            }
        }
        if resource.contains("secret") {
            problems.push(format!(
                "{}: `{resource}` holds placeholders: `kubectl apply -k` would overwrite the real Secret",
                shown(&path)
            ));
        }
    }
    assert_none(problems, "kustomization resources");
}

/// The first document of `kind` in a Kubernetes manifest file.
fn object(file: &str, kind: &str) -> Value {
    let path = deploy().join("kubernetes").join(file);
    yaml_documents(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|doc| str_at(doc, &["kind"]) == Some(kind))
        .unwrap_or_else(|| panic!("{}: no {kind}", shown(&path)))
}

/// `KEY=VALUE` lines of a compose env file (comments and blank lines skipped).
fn env_file(path: &Path) -> Vec<(String, String)> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: `{line}` is not KEY=VALUE", shown(path)));
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// The Kubernetes configuration as the worker loads it: the ConfigMap's file, and the
/// example Secret's keys as environment.
fn kubernetes_config() -> Result<Config, String> {
    let toml = object("configmap.yaml", "ConfigMap");
    let toml = str_at(&toml, &["data", "mensajero.toml"])
        .ok_or("deploy/kubernetes/configmap.yaml: no data.\"mensajero.toml\"")?
        .to_string();
    let secret = object("secret.example.yaml", "Secret");
    let env = secret
        .get("stringData")
        .and_then(Value::as_mapping)
        .ok_or("deploy/kubernetes/secret.example.yaml: no stringData")?
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap_or_default().to_string(),
                v.as_str().unwrap_or_default().to_string(),
            )
        });
    Config::from_sources(Some(&toml), env)
        .map_err(|e| format!("deploy/kubernetes/configmap.yaml with secret.example.yaml: {e}"))
}

#[test]
fn shipped_configurations_load_with_the_workers_loader() {
    let mut problems = Vec::new();

    // Compose: the mounted file plus env_file and `environment`, as the container sees them.
    let compose = yaml(&deploy().join("docker-compose.yml"));
    let worker = compose
        .get("services")
        .and_then(|s| s.get("worker-1"))
        .expect("deploy/docker-compose.yml: no service worker-1");
    let mut env = Vec::new();
    for file in string_list(worker.get("env_file")) {
        env.extend(env_file(&deploy().join(file)));
    }
    if let Some(vars) = worker.get("environment").and_then(Value::as_mapping) {
        for (k, v) in vars {
            env.push((
                k.as_str().unwrap_or_default().to_string(),
                v.as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    let toml = read(&deploy().join("compose/mensajero.toml"));
    match Config::from_sources(Some(&toml), env) {
        Err(e) => problems.push(format!(
            "deploy/compose/mensajero.toml with its env_file: {e}"
        )),
        Ok(config) => {
            if config.http.listen.port() != 8080 {
                problems.push(format!(
                    "deploy/compose/mensajero.toml: http.listen {} is not the port compose publishes and Prometheus scrapes (8080)",
                    config.http.listen
                ));
            }
            if !config.amqp.url.contains("@rabbitmq:") {
                problems.push(format!(
                    "compose: amqp.url {} does not point at the rabbitmq service",
                    config.amqp.url
                ));
            }
        }
    }

    match kubernetes_config() {
        Err(e) => problems.push(e),
        Ok(config) => {
            if config.http.listen.port() != 8080 {
                problems.push(format!(
                    "deploy/kubernetes/configmap.yaml: http.listen {} is not the container port (8080)",
                    config.http.listen
                ));
            }
        }
    }
    assert_none(problems, "shipped configurations");
}

#[test]
fn kubernetes_waits_longer_than_the_workers_shutdown_grace() {
    let deployment = object("deployment.yaml", "Deployment");
    let grace = deployment
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .and_then(|s| s.get("terminationGracePeriodSeconds"))
        .and_then(Value::as_u64)
        .expect("deploy/kubernetes/deployment.yaml: no spec.template.spec.terminationGracePeriodSeconds");
    let shutdown_grace = kubernetes_config()
        .map(|c| c.worker.shutdown_grace)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        shutdown_grace >= Duration::from_secs(30),
        "the worker's shutdown_grace is {shutdown_grace:?}; this check assumes the documented 30 s default or more"
    );
    assert!(
        Duration::from_secs(grace) > shutdown_grace,
        "deploy/kubernetes/deployment.yaml: terminationGracePeriodSeconds {grace} must exceed the worker's shutdown_grace ({shutdown_grace:?}), or Kubernetes kills it mid-drain"
    );
}

/// The cluster variant's configurations load with the worker's loader and name a cluster:
/// three RabbitMQ nodes and three Sentinels, in compose (file + env_file) and in Kubernetes
/// (the ConfigMap's file + the Deployment's environment, its `$(VAR)` references filled in
/// as the kubelet would).
#[test]
fn the_cluster_variant_loads_and_names_three_brokers_and_three_sentinels() {
    use mensajero::store::RedisTarget;
    let dir = deploy().join("cluster");
    let mut problems = Vec::new();
    let mut check = |what: &str, loaded: Result<Config, String>| match loaded {
        Err(e) => problems.push(format!("{what}: {e}")),
        Ok(config) => {
            if config.amqp.nodes().len() != 3 {
                problems.push(format!(
                    "{what}: {} broker nodes",
                    config.amqp.nodes().len()
                ));
            }
            match config.redis.target() {
                RedisTarget::Sentinel { sentinels, .. } if sentinels.len() == 3 => {}
                other => problems.push(format!("{what}: redis is {other:?}, not three sentinels")),
            }
        }
    };

    let compose = yaml(&dir.join("docker-compose.yml"));
    let worker = compose
        .get("services")
        .and_then(|s| s.get("worker"))
        .expect("deploy/cluster/docker-compose.yml: no service worker");
    let env: Vec<(String, String)> = string_list(worker.get("env_file"))
        .iter()
        .flat_map(|file| env_file(&dir.join(file)))
        .collect();
    let toml = read(&dir.join("mensajero.toml"));
    check(
        "deploy/cluster compose",
        Config::from_sources(Some(&toml), env).map_err(|e| e.to_string()),
    );

    let k8s = dir.join("kubernetes");
    let configmap = yaml_documents(&k8s.join("configmap.yaml")).expect("configmap.yaml");
    let toml = configmap
        .iter()
        .find_map(|doc| str_at(doc, &["data", "mensajero.toml"]))
        .expect("deploy/cluster/kubernetes/configmap.yaml: no data.\"mensajero.toml\"")
        .to_string();
    let secret = yaml_documents(&k8s.join("secret.example.yaml")).expect("secret.example.yaml");
    let secrets = secret
        .iter()
        .filter_map(|doc| doc.get("stringData")?.as_mapping().cloned())
        .flatten()
        .map(|(k, v)| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (text(&k), text(&v))
        });
    let deployment = yaml_documents(&k8s.join("deployment.yaml")).expect("deployment.yaml");
    let containers = deployment
        .iter()
        .find_map(|doc| {
            doc.get("spec")?
                .get("template")?
                .get("spec")?
                .get("containers")?
                .as_sequence()
                .cloned()
        })
        .expect("deploy/cluster/kubernetes/deployment.yaml: no containers");
    let env: Vec<(String, String)> = containers[0]
        .get("env")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|var| {
            let name = var.get("name")?.as_str()?;
            let value = var.get("value")?.as_str()?;
            // `$(VAR)` as the kubelet expands it, with a stand-in value.
            let filled = regex_lite_fill(value);
            name.starts_with("MENSAJERO__")
                .then(|| (name.to_string(), filled))
        })
        .chain(secrets)
        .collect();
    check(
        "deploy/cluster/kubernetes",
        Config::from_sources(Some(&toml), env).map_err(|e| e.to_string()),
    );
    assert_none(problems, "the cluster variant");
}

/// `$(NAME)` replaced by `name` (lowercase letters and digits are valid in every URL part).
fn regex_lite_fill(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find(')') else {
            break;
        };
        out.push_str(
            &rest[start + 2..start + end]
                .to_ascii_lowercase()
                .replace('_', ""),
        );
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}
