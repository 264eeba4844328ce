//! The in-memory lookup index: each product's latest version held in memory (its columns
//! as a polars frame plus `customer_id → row`), so `/products/{p}/customers/{id}` never
//! touches the store. A reloader polls each product's `latest.json` and swaps in a new
//! index when it moves; a lookup miss on a stale index triggers a check too.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use polars::prelude::*;

use crate::product::{self, Latest};
use crate::store::{layout, DynStore};

use super::ServiceError;

/// One product's latest version in memory.
#[derive(Debug)]
pub struct Loaded {
    pub product: String,
    pub latest: Latest,
    /// The raw `latest.json`, compared to notice a move.
    pub latest_raw: Vec<u8>,
    pub frame: DataFrame,
    pub rows: HashMap<String, u32>,
}

impl Loaded {
    /// Loads the latest version of `product` (blocking).
    pub fn load(store: &DynStore, product: &str) -> Result<Loaded, ServiceError> {
        let latest_raw = match store.get(&layout::product_latest(product)) {
            Ok(b) => b,
            Err(crate::store::StoreError::NotFound { .. }) => {
                return Err(ServiceError::NotFound(format!(
                    "product {product} has no published version"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let (latest, mut frame) = product::read_latest(store.as_ref(), product)?;
        frame.rechunk_mut();
        let ids = frame
            .column("customer_id")
            .and_then(|c| c.str().cloned())
            .map_err(|e| ServiceError::Internal(format!("product {product}: {e}")))?;
        let mut rows = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if let Some(id) = id {
                rows.insert(id.to_string(), i as u32);
            }
        }
        Ok(Loaded {
            product: product.into(),
            latest,
            latest_raw,
            frame,
            rows,
        })
    }

    /// One customer's row.
    pub fn get(&self, customer_id: &str) -> Option<serde_json::Value> {
        self.rows
            .get(customer_id)
            .map(|i| product::row_json(&self.frame, *i as usize))
    }
}

#[derive(Debug)]
struct Entry {
    loaded: Arc<Loaded>,
    checked: Instant,
}

/// Every loaded product.
#[derive(Debug, Default)]
pub struct ProductIndex {
    entries: RwLock<HashMap<String, Entry>>,
    /// One load or check at a time: a burst of first requests (or of misses) loads once.
    loading: tokio::sync::Mutex<()>,
}

impl ProductIndex {
    /// The loaded index of `product`, if any (no store access).
    pub fn cached(&self, product: &str) -> Option<(Arc<Loaded>, Instant)> {
        let m = self.entries.read().unwrap_or_else(|e| e.into_inner());
        m.get(product).map(|e| (e.loaded.clone(), e.checked))
    }

    fn insert(&self, loaded: Arc<Loaded>) {
        let mut m = self.entries.write().unwrap_or_else(|e| e.into_inner());
        m.insert(
            loaded.product.clone(),
            Entry {
                loaded,
                checked: Instant::now(),
            },
        );
    }

    fn touch(&self, product: &str) {
        let mut m = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = m.get_mut(product) {
            e.checked = Instant::now();
        }
    }

    pub fn products(&self) -> Vec<String> {
        let m = self.entries.read().unwrap_or_else(|e| e.into_inner());
        m.keys().cloned().collect()
    }

    /// Reloads `product` when its `latest.json` differs from the loaded one (blocking);
    /// returns the current index and whether it was reloaded.
    pub fn refresh(
        &self,
        store: &DynStore,
        product: &str,
    ) -> Result<(Arc<Loaded>, bool), ServiceError> {
        if let Some((cur, _)) = self.cached(product) {
            let raw = store.get(&layout::product_latest(product))?;
            if raw == cur.latest_raw {
                self.touch(product);
                return Ok((cur, false));
            }
        }
        let loaded = Arc::new(Loaded::load(store, product)?);
        tracing::info!(product, as_of = %loaded.latest.as_of, rows = loaded.rows.len(), "lookup index loaded");
        self.insert(loaded.clone());
        Ok((loaded, true))
    }

    /// The index for a request: the cached one, or loaded now; after a miss of a stale
    /// index (older than `stale`), `latest.json` is checked once more.
    pub async fn for_request(
        self: &Arc<Self>,
        store: &DynStore,
        product: &str,
        miss_after: Option<Duration>,
    ) -> Result<Arc<Loaded>, ServiceError> {
        let fresh = |me: &Self| match me.cached(product) {
            Some((l, checked)) => match miss_after {
                Some(stale) if checked.elapsed() >= stale => None,
                _ => Some(l),
            },
            None => None,
        };
        if let Some(l) = fresh(self) {
            return Ok(l);
        }
        let _one = self.loading.lock().await;
        // Another request may have loaded or checked it while this one waited.
        if let Some(l) = fresh(self) {
            return Ok(l);
        }
        let me = self.clone();
        let store = store.clone();
        let p = product.to_string();
        tokio::task::spawn_blocking(move || me.refresh(&store, &p).map(|(l, _)| l)).await?
    }
}
