#![allow(clippy::unwrap_used, clippy::expect_used)]

use kit::config::ServiceConfig;

#[test]
fn compose_file_sets_only_variables_and_ports_the_service_reads() {
    kit::testing::assert_compose_matches(users::SERVICE, |vars| {
        Ok(ServiceConfig::from_vars(vars, users::SERVICE, users::DEFAULT_PORT)?.port)
    });
}
