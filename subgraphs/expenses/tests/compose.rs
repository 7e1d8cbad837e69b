#![allow(clippy::unwrap_used, clippy::expect_used)]

use kit::config::ServiceConfig;

#[test]
fn compose_file_sets_only_variables_and_ports_the_service_reads() {
    kit::testing::assert_compose_matches(expenses::SERVICE, |vars| {
        let service = ServiceConfig::from_vars(vars, expenses::SERVICE, expenses::DEFAULT_PORT)?;
        Ok(expenses::Settings::from_vars(vars, service)?.service.port)
    });
}
