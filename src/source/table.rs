//! [`Table`]: a scanned, schema-checked table of the source, and the operations that
//! read it into memory and trim it.

use polars::prelude::*;

use super::contract::TableSpec;
use super::customer_map::CustomerMap;
use super::error::{Result, SourceError};
use super::locate::TableLocation;
use super::normalise::RawCheck;
use super::scan::guard;

/// The internal customer key: a customer's row number in the (materialised) customers
/// table, UInt32. Referencing tables get it from the referential check, so group-bys and
/// joins run on integers instead of id strings.
pub const CUSTOMER_KEY: &str = "_cix";

/// A scanned, schema-checked table.
#[derive(Clone)]
pub struct Table {
    /// The contract table it is.
    pub spec: &'static TableSpec,
    /// Where its files are.
    pub location: TableLocation,
    /// The fingerprint of its files ([`Source::fingerprint`](super::Source::fingerprint)).
    pub fingerprint: String,
    /// The normalised frame (lazy).
    pub frame: LazyFrame,
    pub(super) raw_checks: Vec<RawCheck>,
    /// customers only: the id map, built once from the materialised frame.
    pub(super) customer_map: std::sync::Arc<std::sync::OnceLock<CustomerMap>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("table", &self.spec.name)
            .field("path", &self.location.path)
            .finish()
    }
}

impl Table {
    /// Reads the normalised table into memory once, so that the contract checks and the
    /// feature plans that follow share one decode of the files.
    pub fn collect(&mut self) -> Result<()> {
        let df = guard(|| self.frame.clone().collect()).map_err(|e| SourceError::Unreadable {
            table: self.spec.name.into(),
            path: self.location.path.display().to_string(),
            cause: e.into(),
        })?;
        self.frame = df.lazy();
        Ok(())
    }

    pub(super) fn perr(&self) -> impl Fn(PolarsError) -> SourceError + '_ {
        move |e| SourceError::Polars {
            table: self.spec.name.into(),
            cause: e.into(),
        }
    }

    /// customers: `customer_id -> row number` (of the current frame, in order).
    pub(super) fn customer_map(&self) -> Result<&CustomerMap> {
        if let Some(m) = self.customer_map.get() {
            return Ok(m);
        }
        let df = self
            .frame
            .clone()
            .select([polars::prelude::col("customer_id")])
            .collect()
            .map_err(self.perr())?;
        let ids = df.column("customer_id").map_err(self.perr())?;
        let ids = ids.str().map_err(self.perr())?;
        // Built inside the lock: tables loaded concurrently wait for one build.
        Ok(self.customer_map.get_or_init(|| {
            let t = std::time::Instant::now();
            let m = CustomerMap::build(ids);
            tracing::debug!(secs = t.elapsed().as_secs_f64(), "customer map built");
            m
        }))
    }

    /// customers: frees the id map (once every referencing table is loaded).
    pub fn release_customer_map(&mut self) {
        self.customer_map = Default::default();
    }

    /// customers: adds [`CUSTOMER_KEY`], the row number (call after `check`).
    pub fn add_customer_key(&mut self) -> Result<()> {
        let mut df = self.frame.clone().collect().map_err(self.perr())?;
        let n = df.height() as u32;
        let key = UInt32Chunked::from_vec(CUSTOMER_KEY.into(), (0..n).collect());
        df.with_column(key.into_column()).map_err(self.perr())?;
        self.frame = df.lazy();
        Ok(())
    }

    /// Keeps [`CUSTOMER_KEY`] (when present) and the given columns, releasing the others'
    /// memory (a referencing table after `check`).
    pub fn keep_columns(&mut self, columns: &std::collections::BTreeSet<String>) -> Result<()> {
        let mut df = self.frame.clone().collect().map_err(self.perr())?;
        if df.column(CUSTOMER_KEY).is_err() {
            return Ok(());
        }
        let drop: Vec<PlSmallStr> = df
            .get_column_names()
            .into_iter()
            .filter(|c| c.as_str() != CUSTOMER_KEY && !columns.contains(c.as_str()))
            .cloned()
            .collect();
        for c in drop {
            df.drop_in_place(c.as_str()).map_err(self.perr())?;
        }
        self.frame = df.lazy();
        Ok(())
    }

    /// Keeps only the rows where `rows` is true (after `check`).
    pub fn keep_rows(&mut self, rows: Expr) -> Result<()> {
        let df = self
            .frame
            .clone()
            .filter(rows)
            .collect()
            .map_err(self.perr())?;
        self.frame = df.lazy();
        Ok(())
    }
}
