//! The compose sidecar configuration, proven without a Docker engine: the binary runs with exactly
//! the environment `docker/compose.yml` gives the `hmr-proxy` service (only the service host and
//! paths swapped for local ones), in poll mode, in front of a real upstream. And docker/README.md,
//! the image's only list of settings (it is configured through the environment), names every
//! option's variable.

use std::collections::BTreeMap;

use crate::support::bin::{Running, run_to_exit};
use crate::support::sse::{SseClient, paths};
use crate::support::{Upstream, get, within};

/// The `environment:` mapping of the `hmr-proxy` service in docker/compose.yml. The file is ours
/// and keeps that block as plain `KEY: value` lines; anything else fails loudly here.
fn compose_environment() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/compose.yml"))
        .expect("docker/compose.yml");
    let mut env = BTreeMap::new();
    let mut in_service = false;
    let mut in_env = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent == 2 {
            in_service = trimmed == "hmr-proxy:";
            in_env = false;
        } else if in_service && indent == 4 {
            in_env = trimmed == "environment:";
        } else if in_service && in_env && indent == 6 {
            let (key, value) = trimmed.split_once(':').expect("KEY: value");
            env.insert(
                key.trim().to_string(),
                value.trim().trim_matches('"').to_string(),
            );
        }
    }
    assert!(
        !env.is_empty(),
        "no environment found for the hmr-proxy service"
    );
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_environment_runs_in_poll_mode_in_front_of_an_upstream() {
    let compose = compose_environment();
    for key in compose.keys() {
        assert!(
            key.starts_with("HMR_PROXY_"),
            "{key} is not an hmr-proxy setting"
        );
    }
    assert_eq!(compose["HMR_PROXY_LISTEN"], "0.0.0.0:3000");
    assert!(
        compose.contains_key("HMR_PROXY_POLL"),
        "the sidecar must poll"
    );
    // The upstream is reached by its service name, which Vite, Django and Rails refuse in `Host`.
    assert_eq!(
        compose.get("HMR_PROXY_KEEP_HOST").map(String::as_str),
        Some("true"),
        "the sidecar must send the browser's Host"
    );

    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().canonicalize().unwrap();
    std::fs::write(app.join("site.css"), "body {}").unwrap();
    // Polling compares modification times: make the save's differ from creation's even where
    // the file system's timestamps are coarse.
    std::fs::File::options()
        .write(true)
        .open(app.join("site.css"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(10))
        .unwrap();
    let mut env = compose.clone();
    // Swap only what names the compose network and the container's file system.
    let upstream_url = env["HMR_PROXY_UPSTREAM"].replace("app:8000", &upstream.addr.to_string());
    env.insert("HMR_PROXY_UPSTREAM".into(), upstream_url);
    env.insert("HMR_PROXY_LISTEN".into(), "0.0.0.0:0".into());
    env.insert(
        "HMR_PROXY_WATCH".into(),
        env["HMR_PROXY_WATCH"].replace("/app", &app.display().to_string()),
    );
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let running = Running::start_as_given(&[], &envs, &app);
    assert!(
        running.listening_line.contains(&upstream.url()),
        "{}",
        running.listening_line
    );
    // Said as a warning on a machine, as a note in a container (where this test may run).
    let line = running.wait_for_log("listening on all");
    assert!(
        line.contains(&format!("port {}", running.addr.port())),
        "{line}"
    );
    // The log says the watcher polls, and how often (the compose file's interval).
    let interval = &env["HMR_PROXY_POLL"];
    running.wait_for_log(&format!(", polling every {interval} ms"));

    let (status, _, body) = get(&running.url("/page"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, "upstream saw /page");
    // The dev server sees the name the browser used, not the compose service's.
    let (status, _, body) = get(&running.url("/headers"), &[("host", "localhost:3000")]).await;
    assert_eq!(status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["headers"]["host"][0], "localhost:3000", "{seen}");

    let mut tab = SseClient::open(running.addr, &[]).await;
    std::fs::write(app.join("site.css"), "body { color: red; margin: 1px }").unwrap();
    let batch = within("a polled change", tab.next_batch()).await;
    assert_eq!(paths(&batch), ["site.css"]);

    let listen = format!("0.0.0.0:{}", running.addr.port());
    let mut check_env = envs.clone();
    check_env.retain(|(k, _)| *k != "HMR_PROXY_LISTEN");
    check_env.push(("HMR_PROXY_LISTEN", &listen));
    let out = run_to_exit(&["--health-check"], &check_env, &app);
    assert!(out.status.success(), "{out:?}");
}

/// The image takes its settings from the environment (the health check sees no command
/// arguments), so docker/README.md's table is where a container user finds an option: it must
/// have a row for every variable `--help` shows. `HMR_PROXY_INSECURE` once had none.
#[test]
fn the_docker_readme_lists_every_variable_help_shows() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/README.md"))
        .expect("docker/README.md");
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_exit(&["--help"], &[], dir.path());
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    let mut variables: Vec<&str> = help
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .filter(|word| word.starts_with("HMR_PROXY_") && word.len() > "HMR_PROXY_".len())
        .collect();
    variables.sort_unstable();
    variables.dedup();
    assert!(
        variables.len() > 15,
        "too few variables in --help: {variables:?}"
    );
    let missing: Vec<&str> = variables
        .into_iter()
        .filter(|var| !readme.contains(&format!("| `{var}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docker/README.md's table of variables has no row for {missing:?}"
    );
}
