//! The Glue table of a feature snapshot version: columns, parameters and the Lake
//! Formation tags that keep PII-derived features `confidential`.

use std::collections::BTreeMap;

use super::{schema, GlueCatalog, TableSpec, ID_COLUMN};
use crate::mesh::{Classification, Result};
use crate::offline::Manifest;
use crate::store::layout;

impl GlueCatalog {
    /// A snapshot version's table. Columns derived from PII (the manifest's
    /// `pii_columns`, see [`schema::pii_columns`]) and `customer_id` (an identifier, as in
    /// products) carry `classification=confidential`, every other column `internal`, like
    /// the table; Lake Formation column tags override the table's for those columns. The
    /// table parameter `pii_columns` lists the PII columns (comma-separated Glue names).
    /// A `pii_columns` of another shape makes every column confidential (fail closed).
    pub(super) fn snapshot_table(&self, m: &Manifest) -> Result<TableSpec> {
        let i = &self.inner;
        let table = schema::table_name(&m.name, m.version);
        let pii = schema::pii_columns(&m.extra)
            .inspect_err(|why| {
                tracing::warn!(set = %m.name, version = m.version, as_of = %m.as_of, %why,
                    "the snapshot manifest's pii_columns is unreadable: every column is registered confidential");
            })
            .ok();
        let is_pii = |glue: &str| pii.as_ref().is_none_or(|p| p.contains_key(glue));
        let describe = |c: &str| {
            let sources = pii.as_ref()?.get(&schema::glue_name(c))?;
            (!sources.is_empty()).then(|| format!("PII by lineage, from {}", sources.join(", ")))
        };
        let columns = schema::table_columns(&table, &m.schema, &describe)?;
        let column_tags: BTreeMap<String, String> = columns
            .iter()
            .map(|c| {
                let class = if is_pii(&c.name) || c.name == ID_COLUMN {
                    Classification::Confidential
                } else {
                    Classification::Internal
                };
                (c.name.clone(), class.as_str().to_string())
            })
            .collect();
        let pii_list: Vec<&str> = columns
            .iter()
            .filter(|c| is_pii(&c.name))
            .map(|c| c.name.as_str())
            .collect();
        let mut parameters = BTreeMap::new();
        parameters.insert("feature_set".into(), m.name.clone());
        parameters.insert("feature_set_version".into(), m.version.to_string());
        parameters.insert("definition_hash".into(), m.definition_hash.clone());
        // Glue's limit on a parameter value (characters); a cut list ends in `…`.
        let list = schema::bounded(&pii_list.join(","), 512_000);
        parameters.insert("pii_columns".into(), list);
        let mut tags = BTreeMap::new();
        tags.insert(
            "classification".into(),
            Classification::Internal.as_str().to_string(),
        );
        tags.insert("data_product".into(), m.name.clone());
        Ok(TableSpec {
            kind: "feature snapshot",
            name: m.name.clone(),
            major: m.version,
            database: i.features_db.clone(),
            location: i.location(&layout::snapshot_version(&m.name, m.version)),
            table,
            columns,
            description: format!(
                "Feature snapshots of {} v{} (project {}), one partition per as-of date",
                m.name, m.version, i.project
            ),
            parameters,
            tags,
            column_tags,
        })
    }
}
