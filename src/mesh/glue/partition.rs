//! Glue partitions of a registered table: `as_of=<D>` pointed at the committed run's
//! prefix (created, moved, or left as it is), and read back for garbage collection.

use chrono::NaiveDate;

use aws_sdk_glue::types::PartitionInput;

use super::{glue_err, Inner, TableSpec, MAX_PARTITIONS};
use crate::mesh::{MeshError, Result};

impl Inner {
    /// Points partition `as_of=<D>` at `location`: created, moved, or left as it is.
    pub(super) async fn ensure_partition(
        &self,
        ts: &TableSpec,
        as_of: NaiveDate,
        location: &str,
        actions: &mut Vec<String>,
    ) -> Result<()> {
        let c = self.glue().await?;
        let d = as_of.to_string();
        let res = format!("partition as_of={d} of table {}.{}", ts.database, ts.table);
        let current = match c
            .get_partition()
            .set_catalog_id(self.catalog_id.clone())
            .database_name(&ts.database)
            .table_name(&ts.table)
            .partition_values(&d)
            .send()
            .await
        {
            Ok(o) => o.partition,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(glue_err("GetPartition", res, &e)),
        };
        let input = PartitionInput::builder()
            .values(&d)
            .storage_descriptor(Self::storage(ts, location)?)
            .build();
        let mut exists = current.is_some();
        if let Some(p) = &current {
            if p.storage_descriptor().and_then(|s| s.location()) == Some(location) {
                return Ok(());
            }
        } else {
            let out = c
                .batch_create_partition()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(&ts.database)
                .table_name(&ts.table)
                .partition_input_list(input.clone())
                .send()
                .await
                .map_err(|e| glue_err("BatchCreatePartition", res.clone(), &e))?;
            match out.errors().first().and_then(|e| e.error_detail()) {
                None => {
                    actions.push(format!(
                        "BatchCreatePartition {}.{} as_of={d} -> {location}",
                        ts.database, ts.table
                    ));
                }
                // Created concurrently in between: move it below.
                Some(e) if e.error_code() == Some("AlreadyExistsException") => exists = true,
                Some(e) => {
                    return Err(MeshError::Aws {
                        service: "Glue",
                        operation: "BatchCreatePartition",
                        resource: res,
                        message: format!(
                            "{}: {}",
                            e.error_code().unwrap_or("error"),
                            e.error_message().unwrap_or("")
                        ),
                    })
                }
            }
        }
        if exists {
            c.update_partition()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(&ts.database)
                .table_name(&ts.table)
                .partition_value_list(&d)
                .partition_input(input)
                .send()
                .await
                .map_err(|e| glue_err("UpdatePartition", res, &e))?;
            actions.push(format!(
                "UpdatePartition {}.{} as_of={d} -> {location}",
                ts.database, ts.table
            ));
        }
        Ok(())
    }

    /// Every partition location of a table (paginated, at most [`MAX_PARTITIONS`]).
    pub(super) async fn partition_locations(&self, db: &str, table: &str) -> Result<Vec<String>> {
        let c = self.glue().await?;
        let res = format!("table {db}.{table}");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = match c
                .get_partitions()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(db)
                .table_name(table)
                .set_next_token(token.take())
                .max_results(1000)
                .send()
                .await
            {
                Ok(p) => p,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_entity_not_found_exception()) =>
                {
                    return Ok(vec![]);
                }
                Err(e) => return Err(glue_err("GetPartitions", res, &e)),
            };
            out.extend(
                page.partitions()
                    .iter()
                    .filter_map(|p| p.storage_descriptor()?.location().map(String::from)),
            );
            if out.len() > MAX_PARTITIONS {
                return Err(MeshError::Aws {
                    service: "Glue",
                    operation: "GetPartitions",
                    resource: res,
                    message: format!("more than {MAX_PARTITIONS} partitions; c360 reads at most that many (remove old partitions of the table)"),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }
}
