//! The standard columns every scoring product has (`customer_id`, the score, `risk_band`,
//! the included features, `as_of`, `scored_at`, `model`, `model_version`,
//! `feature_sets`), how they are computed from a run's scores, and their documentation in
//! the product's contract ([`ColumnDoc`]s); also the contract's freshness, from the job's
//! schedule ([`crate::schedule::CronSchedule::freshness_days`]).

use chrono::{NaiveDate, Utc};
use polars::prelude::*;

use super::{ColumnDoc, LogicalType, ProductSpec};
use crate::features::FeatureSet;
use crate::model::ModelSpec;
use crate::names::AsOf;
use crate::names::ProductName;
use crate::pipeline::job::ProductFile;

/// What the standard columns are computed from: the product section of the job, the
/// model, the feature sets and the run's date.
pub struct ScoredRun<'a> {
    /// The job's `[product]`.
    pub product: &'a ProductFile<ProductName>,
    /// The job's cron schedule (its nominal interval sets the contract's freshness).
    pub schedule: &'a crate::schedule::CronSchedule,
    /// The model's name.
    pub model_name: &'a str,
    /// The model's spec (description, risk bands).
    pub model: &'a ModelSpec,
    /// The model artifact's version (first 12 hex digits of its SHA-256).
    pub model_version: String,
    /// The model's feature sets.
    pub sets: &'a [FeatureSet],
    /// The run's as-of date.
    pub as_of: NaiveDate,
    /// The gates' score range, documented on the score column.
    pub score_range: (f64, f64),
}

/// The product's rows (`scores` with `customer_id, score`, joined to the included columns
/// of `snapshots`) and its spec with the column docs.
pub fn product_frame(
    r: &ScoredRun<'_>,
    scores: &DataFrame,
    snapshots: DataFrame,
) -> PolarsResult<(ProductSpec, DataFrame)> {
    let def = r.product;
    let mspec = r.model;
    let snap = snapshots;
    let mut keep = vec![col("customer_id")];
    keep.extend(def.include.iter().map(|c| col(c.as_str())));
    let extra = snap.lazy().select(keep);
    let bands: Vec<(String, Option<f64>)> = mspec
        .risk_bands
        .iter()
        .map(|b| (b.name.clone(), b.below))
        .collect();
    let mut band = lit(NULL).cast(DataType::String);
    for (name, below) in bands.iter().rev() {
        band = match below {
            Some(b) => when(col("score").lt(lit(*b)))
                .then(lit(name.clone()))
                .otherwise(band),
            None => lit(name.clone()),
        };
    }
    let set_versions = r
        .sets
        .iter()
        .map(|s| format!("{} v{}", s.name, s.version))
        .collect::<Vec<_>>()
        .join(", ");
    let scored_at = Utc::now().timestamp_micros();
    let mut select = vec![
        col("customer_id"),
        col("score").alias(def.score_column.as_str()),
        band.alias("risk_band"),
    ];
    select.extend(def.include.iter().map(|c| col(c.as_str())));
    select.extend([
        lit(AsOf::from(r.as_of).day_number())
            .cast(DataType::Date)
            .alias("as_of"),
        lit(scored_at)
            .cast(DataType::Datetime(
                TimeUnit::Microseconds,
                Some(polars::prelude::TimeZone::UTC),
            ))
            .alias("scored_at"),
        lit(r.model_name.to_string()).alias("model"),
        lit(r.model_version.clone()).alias("model_version"),
        lit(set_versions).alias("feature_sets"),
    ]);
    let df = scores
        .clone()
        .lazy()
        .join(
            extra,
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Left),
        )
        .select(select)
        .sort(["customer_id"], Default::default())
        .collect()?;
    Ok((product_spec(r), df))
}

/// The names of the product's columns, in order: `customer_id`, the score, `risk_band`,
/// the included features, `as_of`, `scored_at`, `model`, `model_version`, `feature_sets`.
pub fn standard_columns<N>(def: &ProductFile<N>) -> Vec<String> {
    let mut v = vec![
        "customer_id".to_string(),
        def.score_column.clone(),
        "risk_band".into(),
    ];
    v.extend(def.include.iter().cloned());
    v.extend(
        [
            "as_of",
            "scored_at",
            "model",
            "model_version",
            "feature_sets",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    v
}

/// The product's spec with its column docs (what [`product_frame`] writes, without data):
/// also what `c360 run --dry-run` and the catalog show before a run.
pub fn product_spec(r: &ScoredRun<'_>) -> ProductSpec {
    let def = r.product;
    let mspec = r.model;
    let bands: Vec<(String, Option<f64>)> = mspec
        .risk_bands
        .iter()
        .map(|b| (b.name.clone(), b.below))
        .collect();
    let desc = |c: &str| -> String {
        r.sets
            .iter()
            .find_map(|s| s.feature(c).map(|f| f.description.clone()))
            .unwrap_or_default()
    };
    let mut columns = vec![
        ColumnDoc {
            name: "customer_id".into(),
            description: "The customer (Customer 360 id)".into(),
            logical_type: LogicalType::String,
            required: true,
            allowed: vec![],
            range: None,
            classification: Default::default(),
        },
        ColumnDoc {
            name: def.score_column.clone(),
            description: mspec
                .description
                .clone()
                .unwrap_or_else(|| "Model score".into()),
            logical_type: LogicalType::Number,
            required: true,
            allowed: vec![],
            range: Some(r.score_range),
            classification: Default::default(),
        },
        ColumnDoc {
            name: "risk_band".into(),
            description: format!(
                "Band of the score: {}",
                bands
                    .iter()
                    .map(|(n, b)| match b {
                        Some(b) => format!("{n} below {b}"),
                        None => format!("{n} otherwise"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            logical_type: LogicalType::String,
            required: !bands.is_empty(),
            allowed: bands.iter().map(|b| b.0.clone()).collect(),
            range: None,
            classification: Default::default(),
        },
    ];
    for c in &def.include {
        let ty = snap_type(r.sets, c);
        columns.push(ColumnDoc {
            name: c.clone(),
            description: desc(c),
            logical_type: ty,
            required: false,
            allowed: vec![],
            range: None,
            classification: Default::default(),
        });
    }
    columns.extend([
        ColumnDoc {
            name: "as_of".into(),
            description: "Features are as of this date (UTC); no later event influenced the score"
                .into(),
            logical_type: LogicalType::Date,
            required: true,
            allowed: vec![],
            range: None,
            classification: Default::default(),
        },
        ColumnDoc {
            name: "scored_at".into(),
            description: "When the score was computed (UTC)".into(),
            logical_type: LogicalType::Timestamp,
            required: true,
            allowed: vec![],
            range: None,
            classification: Default::default(),
        },
        ColumnDoc {
            name: "model".into(),
            description: "The model's name".into(),
            logical_type: LogicalType::String,
            required: true,
            allowed: vec![],
            range: None,
            classification: Default::default(),
        },
        ColumnDoc {
            name: "model_version".into(),
            description: "First 12 hex digits of the model artifact's SHA-256".into(),
            logical_type: LogicalType::String,
            required: true,
            allowed: vec![],
            range: None,
            classification: Default::default(),
        },
        ColumnDoc {
            name: "feature_sets".into(),
            description: "Feature sets and versions the score was computed from".into(),
            logical_type: LogicalType::String,
            required: true,
            allowed: vec![],
            range: None,
            classification: Default::default(),
        },
    ]);
    for c in &mut columns {
        c.classification = def.column_classification_of(&c.name);
    }
    ProductSpec {
        name: def.name.clone(),
        major: def.major,
        domain: def.domain.clone(),
        owner: def.owner.clone(),
        description: def.description.clone(),
        consumers: def.consumers.clone(),
        retention_days: def.retention_days,
        // A new version is due every nominal interval of the schedule (a monthly job: 31 days).
        freshness_days: r.schedule.freshness_days(),
        schedule: r.schedule.expr.clone(),
        columns,
        classification: def.classification,
        lf_tags: def.lf_tags.clone(),
    }
}

/// The contract's logical type of an included feature column.
fn snap_type(sets: &[FeatureSet], c: &str) -> LogicalType {
    use crate::features::expr::Ty;
    let ty = sets
        .iter()
        .find_map(|s| s.feature(c).map(|f| f.ty))
        .unwrap_or(Ty::Str);
    match ty {
        Ty::Int => LogicalType::Integer,
        Ty::Float | Ty::Null => LogicalType::Number,
        Ty::Bool => LogicalType::Boolean,
        Ty::Str | Ty::Time => LogicalType::String,
    }
}
