//! Identifiers: UUIDv7 strings, also used as `_id`.

/// A new time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// True when `id` is shaped like an id we issue (any UUID in canonical text).
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::parse_str(id).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v7_and_time_ordered() {
        let a = new_id();
        let b = new_id();
        assert!(is_valid_id(&a));
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 7);
        assert!(a < b);
        assert!(!is_valid_id("not-an-id"));
    }
}
