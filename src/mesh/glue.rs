//! The Glue Data Catalog (with Lake Formation tags): [`GlueCatalog`]. Not built yet.

use super::{CatalogSettings, MeshError, Result};
use crate::aws::AwsSettings;

/// The Glue Data Catalog.
#[derive(Debug)]
pub struct GlueCatalog {}

impl GlueCatalog {
    /// A catalog over `[catalog]` and `[aws]`; `project`: the project's name (default
    /// database names); `store_uri`: the store (must be on S3). Makes no call.
    pub fn new(
        _settings: &CatalogSettings,
        _aws: &AwsSettings,
        _project: &str,
        _store_uri: &str,
    ) -> Result<GlueCatalog> {
        Err(MeshError::Settings {
            section: "catalog",
            message: "kind = \"glue\" is not built yet".into(),
        })
    }
}

impl super::Catalog for GlueCatalog {
    fn kind(&self) -> &'static str {
        "glue"
    }
    fn check_product(
        &self,
        _: &crate::product::ProductSpec,
        _: &[crate::offline::ColumnInfo],
    ) -> Result<()> {
        Ok(())
    }
    fn register_product(
        &self,
        _: &dyn crate::store::ObjectStore,
        _: &crate::product::ProductSpec,
        _: &crate::offline::Manifest,
    ) -> Result<Option<super::CatalogRecord>> {
        Ok(None)
    }
    fn register_snapshot(
        &self,
        _: &dyn crate::store::ObjectStore,
        _: &crate::offline::Manifest,
    ) -> Result<Option<super::CatalogRecord>> {
        Ok(None)
    }
    fn plan_product(&self, _: &crate::product::ProductSpec, _: chrono::NaiveDate) -> Vec<String> {
        vec![]
    }
    fn referenced_locations(
        &self,
        _: &dyn crate::store::ObjectStore,
        _: &str,
        _: u32,
    ) -> Result<Vec<String>> {
        Ok(vec![])
    }
}
