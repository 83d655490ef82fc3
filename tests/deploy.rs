//! The deployment files hold together: the Kubernetes manifests validate against
//! Kubernetes' schemas (kubernetes-validate, strict), their flags are ones the job
//! takes, their probes and scrape port are the job's; the Dockerfile builds examples and
//! features that exist; the Grafana dashboard queries only documented metrics. No
//! cluster or Docker engine runs here: what they would do is in docs/operations.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 3, "{v:?}");
    v
}

fn validate(files: &[&Path]) -> std::process::Output {
    Command::new("kubernetes-validate")
        .arg("--strict")
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kubernetes-validate cannot run ({e}): `pip install kubernetes-validate` \
                 (bash scripts/test does)"
            )
        })
}

#[test]
fn the_manifests_validate_against_kubernetes_schemas() {
    let files = manifests();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = validate(&refs);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("passed for resource statefulset/uv-dashboard"),
        "{text}"
    );
    // The validator does reject a broken manifest.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let original = std::fs::read_to_string(root().join("deploy/statefulset.yaml")).unwrap();
    std::fs::write(
        &broken,
        original.replace("containerPort: 9249", "containerPort: http"),
    )
    .unwrap();
    assert!(!validate(&[&broken]).status.success());
}

#[test]
fn the_manifests_flags_probes_and_port_are_the_jobs() {
    let help = Command::new(common::example("uv_dashboard"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    for file in manifests() {
        let text = std::fs::read_to_string(&file).unwrap();
        if !text.contains("kind: StatefulSet") {
            continue;
        }
        for line in text.lines().map(str::trim) {
            if let Some(flag) = line.strip_prefix("- --") {
                let name = flag.split('=').next().unwrap();
                assert!(
                    help.contains(&format!("--{name}")),
                    "{}: uv_dashboard takes no --{name}",
                    file.display()
                );
            }
        }
        assert!(text.contains("path: /livez") && text.contains("path: /readyz"));
        assert!(text.contains("prometheus.io/port: \"9249\""));
        assert!(text.contains("--http=0.0.0.0:9249"));
        assert!(text.contains("containerPort: 9249"));
        assert!(text.contains("--savepoint-on-stop"));
    }
}

#[test]
fn the_dockerfile_builds_examples_and_features_that_exist() {
    let docker = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let features = docker
        .lines()
        .find_map(|l| l.strip_prefix("ARG FEATURES="))
        .unwrap();
    for f in features.split(',') {
        assert!(
            cargo.contains(&format!("\n{f} = [")),
            "no feature `{f}` in Cargo.toml"
        );
    }
    let mut examples = 0;
    for word in docker.split_whitespace().collect::<Vec<_>>().windows(2) {
        if word[0] == "--example" {
            examples += 1;
            assert!(
                root()
                    .join("examples")
                    .join(format!("{}.rs", word[1]))
                    .is_file(),
                "no example {}",
                word[1]
            );
            assert!(docker.contains(&format!("target/release/examples/{}", word[1])));
        }
    }
    assert_eq!(examples, 4);
}

#[test]
fn the_grafana_dashboard_queries_documented_metrics() {
    let text = std::fs::read_to_string(root().join("deploy/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let docs = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 12);
    let mut names = 0;
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains("job_name=~\"$job\""), "{expr}");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("ferroflow_") {
                    names += 1;
                    assert!(
                        docs.contains(&format!("`{word}`")),
                        "the dashboard queries {word}, which docs/operations.md does not list"
                    );
                }
            }
        }
    }
    assert!(names >= 20, "{names}");
}
