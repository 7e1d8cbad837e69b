#![allow(clippy::unwrap_used, clippy::expect_used)]

use kit::config::ServiceConfig;

#[test]
fn compose_file_sets_only_variables_and_ports_the_service_reads() {
    kit::testing::assert_compose_matches(analytics::SERVICE, |vars| {
        let service = ServiceConfig::from_vars(vars, analytics::SERVICE, analytics::DEFAULT_PORT)?;
        Ok(analytics::Settings::from_vars(vars, service)?.service.port)
    });
}
