//! Lake Formation tags (LF-Tags) of registered tables: the tag keys and values exist
//! (`CreateLFTag`, or `UpdateLFTag` with `TagValuesToAdd`), then the database, the table
//! and each column carry their tags (`AddLFTagsToResource`, columns through
//! `TableWithColumns`, grouped by `classification` value).
//!
//! The tag model: a product table carries `domain`, `data_product`, `classification` and
//! the job's extra `[product.lf_tags]`; each column carries its contract `classification`
//! (`public`, `internal`, `confidential`; identifiers such as `customer_id` are
//! `confidential`); the shared database carries `domain` and the extra tags, each only
//! while it has no value for that key yet (products of several domains may share one
//! database; `data_product` and `classification` belong to tables). The `as_of` partition
//! key is not tagged (it is no table column). Tags are read back first
//! (`GetResourceLFTags`) so that a registration that changes nothing calls nothing.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_lakeformation::error::SdkError;
use aws_sdk_lakeformation::types::{
    DatabaseResource, LfTagPair, Resource, TableResource, TableWithColumnsResource,
};
use aws_sdk_lakeformation::Client;

use super::{Classification, MeshError, Result};

/// The tag key of column and table sensitivity.
pub const CLASSIFICATION: &str = "classification";

/// What one table should carry.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The Glue database.
    pub database: &'a str,
    /// The Glue table.
    pub table: &'a str,
    /// Tag key → value of the table.
    pub table_tags: &'a BTreeMap<String, String>,
    /// Column (Glue name) → its `classification` value.
    pub column_tags: &'a BTreeMap<String, String>,
}

/// The tags a product's table tags put on its (shared) database: all but `data_product`
/// and `classification`, i.e. `domain` and the job's extra `[product.lf_tags]`.
///
/// This is deliberate: every product of a project shares one products database (and
/// every snapshot the features database), so per-product keys belong to tables and
/// columns, where Lake Formation evaluates them; a database tag only says whose database
/// it is, and [`apply`] sets each key only while the database has no value for it yet
/// (the first product to register names the domain; later ones never overwrite it). A
/// snapshot table's tags are `classification` and `data_product` only, so the features
/// database carries none.
pub fn database_tags(table: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    table
        .iter()
        .filter(|(k, _)| k.as_str() != "data_product" && k.as_str() != CLASSIFICATION)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn lf_err<E, R>(operation: &'static str, resource: String, e: &SdkError<E, R>) -> MeshError
where
    E: aws_sdk_lakeformation::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    MeshError::Aws {
        service: "Lake Formation",
        operation,
        resource,
        message: format!(
            "{} (check [aws] lakeformation_endpoint_url or AWS_ENDPOINT_URL_LAKEFORMATION, and that the caller is a Lake Formation administrator or tag creator; or set [catalog] lf_tags = false)",
            crate::aws::error_text(e)
        ),
    }
}

fn build_err(operation: &'static str, resource: &str, e: impl std::fmt::Display) -> MeshError {
    MeshError::Aws {
        service: "Lake Formation",
        operation,
        resource: resource.to_string(),
        message: format!("the request could not be built: {e}"),
    }
}

fn pairs(catalog_id: Option<&str>, tags: &BTreeMap<String, String>) -> Result<Vec<LfTagPair>> {
    tags.iter()
        .map(|(k, v)| {
            LfTagPair::builder()
                .set_catalog_id(catalog_id.map(String::from))
                .tag_key(k)
                .tag_values(v)
                .build()
                .map_err(|e| build_err("AddLFTagsToResource", k, e))
        })
        .collect()
}

/// Tag key → value of pairs read back (the first value of each key).
fn as_map(pairs: &[LfTagPair]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .filter_map(|p| Some((p.tag_key().to_string(), p.tag_values().first()?.clone())))
        .collect()
}

/// Makes sure every tag key of `needed` exists with at least those values.
pub async fn ensure_tag_keys(
    c: &Client,
    catalog_id: Option<&str>,
    needed: &BTreeMap<String, BTreeSet<String>>,
    actions: &mut Vec<String>,
) -> Result<()> {
    for (key, values) in needed {
        let res = format!("LF-Tag {key}");
        let existing: BTreeSet<String> = match c
            .get_lf_tag()
            .set_catalog_id(catalog_id.map(String::from))
            .tag_key(key)
            .send()
            .await
        {
            Ok(o) => o.tag_values().iter().cloned().collect(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                BTreeSet::new()
            }
            Err(e) => return Err(lf_err("GetLFTag", res, &e)),
        };
        let mut missing: Vec<&String> = values.difference(&existing).collect();
        if existing.is_empty() {
            let created = c
                .create_lf_tag()
                .set_catalog_id(catalog_id.map(String::from))
                .tag_key(key)
                .set_tag_values(Some(values.iter().cloned().collect()))
                .send()
                .await;
            match created {
                Ok(_) => {
                    actions.push(format!(
                        "CreateLFTag {key} = {}",
                        values.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                    missing.clear();
                }
                // Created concurrently: add the values below.
                Err(e)
                    if aws_sdk_lakeformation::error::ProvideErrorMetadata::code(&e)
                        == Some("AlreadyExistsException") => {}
                Err(e) => return Err(lf_err("CreateLFTag", res, &e)),
            }
        }
        if !missing.is_empty() {
            c.update_lf_tag()
                .set_catalog_id(catalog_id.map(String::from))
                .tag_key(key)
                .set_tag_values_to_add(Some(missing.iter().map(|s| s.to_string()).collect()))
                .send()
                .await
                .map_err(|e| lf_err("UpdateLFTag", res, &e))?;
            actions.push(format!(
                "UpdateLFTag {key} += {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

async fn add(
    c: &Client,
    catalog_id: Option<&str>,
    resource: Resource,
    what: String,
    tags: &BTreeMap<String, String>,
    actions: &mut Vec<String>,
) -> Result<()> {
    let out = c
        .add_lf_tags_to_resource()
        .set_catalog_id(catalog_id.map(String::from))
        .resource(resource)
        .set_lf_tags(Some(pairs(catalog_id, tags)?))
        .send()
        .await
        .map_err(|e| lf_err("AddLFTagsToResource", what.clone(), &e))?;
    if let Some(f) = out.failures().first() {
        let key = f.lf_tag().map(|t| t.tag_key()).unwrap_or("?");
        let detail = f.error();
        return Err(MeshError::Aws {
            service: "Lake Formation",
            operation: "AddLFTagsToResource",
            resource: what,
            message: format!(
                "tag {key}: {}: {}",
                detail.and_then(|d| d.error_code()).unwrap_or("error"),
                detail.and_then(|d| d.error_message()).unwrap_or("")
            ),
        });
    }
    let text = tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    actions.push(format!("AddLFTagsToResource {what} ({text})"));
    Ok(())
}

/// Tags `t`'s database, table and columns (creating tag keys and values first).
/// `fresh_database` / `fresh_table`: created by this registration (nothing to read back).
pub async fn apply(
    c: &Client,
    catalog_id: Option<&str>,
    t: &Target<'_>,
    fresh_database: bool,
    fresh_table: bool,
    actions: &mut Vec<String>,
) -> Result<()> {
    let db_tags = database_tags(t.table_tags);
    let mut needed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, v) in t.table_tags.iter().chain(&db_tags) {
        needed.entry(k.clone()).or_default().insert(v.clone());
    }
    let class = needed.entry(CLASSIFICATION.into()).or_default();
    class.extend(Classification::ALL.map(|c| c.as_str().to_string()));
    class.extend(t.column_tags.values().cloned());
    ensure_tag_keys(c, catalog_id, &needed, actions).await?;

    let cid = catalog_id.map(String::from);
    let (db, table) = (t.database, t.table);
    let read = |resource: Resource, what: String| {
        let c = c.clone();
        let cid = cid.clone();
        async move {
            c.get_resource_lf_tags()
                .set_catalog_id(cid)
                .resource(resource)
                .show_assigned_lf_tags(true)
                .send()
                .await
                .map_err(|e| lf_err("GetResourceLFTags", what, &e))
        }
    };

    // The database: only keys it has no value for yet.
    if !db_tags.is_empty() {
        let what = format!("database {db}");
        let resource = || -> Result<Resource> {
            Ok(Resource::builder()
                .database(
                    DatabaseResource::builder()
                        .set_catalog_id(cid.clone())
                        .name(db)
                        .build()
                        .map_err(|e| build_err("AddLFTagsToResource", db, e))?,
                )
                .build())
        };
        let current = if fresh_database {
            BTreeMap::new()
        } else {
            as_map(read(resource()?, what.clone()).await?.lf_tag_on_database())
        };
        if db_tags.keys().any(|k| !current.contains_key(k)) {
            let mut all = db_tags.clone();
            all.extend(current);
            add(c, catalog_id, resource()?, what, &all, actions).await?;
        }
    }

    // The table.
    let what = format!("table {db}.{table}");
    let resource = || -> Result<Resource> {
        Ok(Resource::builder()
            .table(
                TableResource::builder()
                    .set_catalog_id(cid.clone())
                    .database_name(db)
                    .name(table)
                    .build()
                    .map_err(|e| build_err("AddLFTagsToResource", table, e))?,
            )
            .build())
    };
    let current = if fresh_table {
        BTreeMap::new()
    } else {
        as_map(read(resource()?, what.clone()).await?.lf_tags_on_table())
    };
    if t.table_tags.iter().any(|(k, v)| current.get(k) != Some(v)) {
        add(c, catalog_id, resource()?, what, t.table_tags, actions).await?;
    }

    // The columns, one call per classification value.
    if t.column_tags.is_empty() {
        return Ok(());
    }
    let columns = |cols: Vec<String>| -> Result<Resource> {
        Ok(Resource::builder()
            .table_with_columns(
                TableWithColumnsResource::builder()
                    .set_catalog_id(cid.clone())
                    .database_name(db)
                    .name(table)
                    .set_column_names(Some(cols))
                    .build()
                    .map_err(|e| build_err("AddLFTagsToResource", table, e))?,
            )
            .build())
    };
    let current: BTreeMap<String, String> = if fresh_table {
        BTreeMap::new()
    } else {
        read(
            columns(t.column_tags.keys().cloned().collect())?,
            format!("columns of table {db}.{table}"),
        )
        .await?
        .lf_tags_on_columns()
        .iter()
        .filter_map(|c| {
            let v = as_map(c.lf_tags()).remove(CLASSIFICATION)?;
            Some((c.name()?.to_string(), v))
        })
        .collect()
    };
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (col, v) in t.column_tags {
        if current.get(col) != Some(v) {
            groups.entry(v.as_str()).or_default().push(col.clone());
        }
    }
    for (v, cols) in groups {
        let what = format!("columns {} of table {db}.{table}", cols.join(", "));
        let tags = BTreeMap::from([(CLASSIFICATION.to_string(), v.to_string())]);
        add(c, catalog_id, columns(cols)?, what, &tags, actions).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_gets_neither_data_product_nor_classification() {
        let t = BTreeMap::from([
            ("domain".to_string(), "marketing".to_string()),
            ("data_product".to_string(), "churn".to_string()),
            ("classification".to_string(), "internal".to_string()),
            ("cost_center".to_string(), "cc1".to_string()),
        ]);
        assert_eq!(
            database_tags(&t),
            BTreeMap::from([
                ("cost_center".to_string(), "cc1".to_string()),
                ("domain".to_string(), "marketing".to_string()),
            ])
        );
    }
}
