//! A projection is built in versions: each a schema of its own (`proj_<name>_v<n>`),
//! so a rebuild fills a new one while readers use the old.

/// A projection at one version: what one consumer group builds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub projection: &'static str,
    pub version: i32,
}

impl Target {
    pub fn schema(&self) -> String {
        schema_name(self.projection, self.version)
    }
}

/// Schema holding version `version` of `projection`'s tables.
pub fn schema_name(projection: &str, version: i32) -> String {
    format!("proj_{projection}_v{version}")
}

/// The version a schema named by [`schema_name`] holds.
pub fn version_of_schema(schema: &str) -> Option<i32> {
    schema.rsplit_once("_v").and_then(|(_, version)| version.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_carry_their_version() {
        let target = Target { projection: "search_orders", version: 12 };
        assert_eq!(target.schema(), "proj_search_orders_v12");
        assert_eq!(version_of_schema(&target.schema()), Some(12));
        assert_eq!(version_of_schema("public"), None);
    }
}
