//! docker-compose.yml against the router's configuration code: every variable the file
//! sets for the router is one the router reads, the ports agree, and the config file it
//! names sends each subgraph of the supergraph to that subgraph's compose service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use kit::testing::{compose_service, workspace_root};
use router::Config;
use router::supergraph::Supergraph;

/// Where the Dockerfile puts `router/docker.toml`.
const IMAGE_CONFIG: &str = "/app/router.toml";

fn dockerfile() -> String {
    std::fs::read_to_string(workspace_root().join("Dockerfile")).expect("Dockerfile")
}

fn docker_toml() -> PathBuf {
    workspace_root().join("router").join("docker.toml")
}

#[test]
fn compose_file_sets_only_variables_the_router_reads_and_publishes_its_listen_port() {
    let compose = compose_service("router");
    assert_eq!(
        compose.environment.get("ROUTER_CONFIG").map(String::as_str),
        Some(IMAGE_CONFIG)
    );
    assert!(
        dockerfile().contains(&format!("COPY router/docker.toml {IMAGE_CONFIG}")),
        "the Dockerfile must copy router/docker.toml to {IMAGE_CONFIG}"
    );
    let seen = Mutex::new(BTreeSet::new());
    let env = |name: &str| {
        seen.lock().expect("lock").insert(name.to_owned());
        if name == "ROUTER_CONFIG" {
            // The file the image holds at that path.
            return Some(docker_toml().display().to_string());
        }
        compose.environment.get(name).cloned()
    };
    let config = Config::from_env(env).expect("the compose configuration is accepted");
    let seen = seen.into_inner().expect("lock");
    let unknown: Vec<&String> = compose
        .environment
        .keys()
        .filter(|k| !seen.contains(*k))
        .collect();
    assert!(
        unknown.is_empty(),
        "docker-compose.yml sets variables the router never reads: {unknown:?}"
    );
    let port = config.listen.port();
    assert_eq!(port, 3000);
    assert_eq!(compose.container_ports, vec![port], "published ports");
    assert_eq!(compose.health_ports, vec![port], "health-check ports");
    assert!(
        config.auth.jwt_secret.is_some(),
        "JWT_SECRET reaches the router"
    );
    assert_eq!(
        config.supergraph,
        PathBuf::from("/app/schema/supergraph.graphql")
    );
    assert!(
        dockerfile().contains("COPY schema/ /app/schema/"),
        "the image holds schema/ at /app/schema/"
    );
}

#[test]
fn router_docker_config_sends_every_subgraph_to_its_compose_service_port() {
    let supergraph = Supergraph::from_file(&workspace_root().join("schema/supergraph.graphql"))
        .expect("the committed supergraph loads");
    let config = Config::from_file(&docker_toml()).expect("router/docker.toml is valid");
    let names: BTreeSet<&String> = supergraph.subgraphs.iter().map(|(n, _)| n).collect();
    let configured: BTreeSet<&String> = config.subgraphs.keys().collect();
    assert_eq!(configured, names, "router/docker.toml names each subgraph");
    for name in names {
        let port = compose_service(name)
            .environment
            .get("PORT")
            .cloned()
            .unwrap_or_else(|| panic!("{name} has a PORT in docker-compose.yml"));
        assert_eq!(
            config.subgraphs[name.as_str()].url.as_deref(),
            Some(format!("http://{name}:{port}/graphql").as_str()),
            "{name}"
        );
    }
}
