//! `c360 features sql SET ...`: prints the query a feature set compiles to (`crate::sql`).

use chrono::NaiveDate;
use clap::Args;

use super::{exit, Failure};
use crate::features;
use crate::project::Project;
use crate::sql::{self, Dialect, Target};

/// The help's closing text: what the query reads and returns, with examples.
const AFTER_HELP: &str = "\
Examples:
  c360 features sql churn_signals --as-of 2024-06-30
  c360 features sql rfm --dialect athena --as-of 2024-03-31 --as-of 2024-06-30
  c360 features sql churn_signals --dialect spark --spine ml.spine --label churned_90d

The query reads the contract tables by name (customers, orders, interactions,
support_tickets: views or tables with the contract's columns and types) and returns
customer_id, as_of (DATE) and the set's visible columns, with the names and types of
`c360 features build` (plus the labels asked for). With --as-of (repeatable): one row per
customer signed up on or before each date. With --spine TABLE (columns customer_id and
as_of): one row per spine row whose customer is signed up by its date; quantile scores
still rank the whole population at each date.

Timestamps are UTC: run the query with the session time zone UTC (DuckDB
`SET TimeZone = 'UTC'`, Spark `spark.sql.session.timeZone=UTC`). A label needs data up to
as_of + its horizon; the query does not check it. Where a dialect lacks something the set
uses, the command names the feature and why (exit 3).";

/// Arguments of `c360 features sql`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct SqlArgs {
    /// The set's name.
    pub set: String,
    /// The SQL dialect: duckdb, spark (Spark SQL 3.5+/4.x) or athena (Trino, engine v3).
    #[arg(long, default_value = "duckdb", value_parser = Dialect::parse)]
    pub dialect: Dialect,
    /// An as-of date (YYYY-MM-DD, UTC); repeat for a snapshot at many dates.
    #[arg(long = "as-of", value_parser = crate::names::AsOf::parse_date,
          conflicts_with = "spine", required_unless_present = "spine")]
    pub as_of: Vec<NaiveDate>,
    /// A spine table (customer_id, as_of) for a training set: name, schema.name or
    /// catalog.schema.name.
    #[arg(long)]
    pub spine: Option<String>,
    /// A label of the set to add (with --spine; repeatable), e.g. churned_90d.
    #[arg(long)]
    pub label: Vec<String>,
}

/// Prints the query for `a` to stdout.
pub fn run(project: &Project, a: SqlArgs) -> Result<(), Failure> {
    let set = features::find_set(&project.features_dir(), &a.set)?;
    if a.spine.is_none() && !a.label.is_empty() {
        return Err(Failure {
            code: exit::USAGE,
            error: anyhow::anyhow!(
                "--label {} needs --spine TABLE: labels are columns of training sets, not snapshots",
                a.label.join(", ")
            ),
        });
    }
    let target = match a.spine {
        Some(table) => Target::Spine {
            table,
            labels: a.label,
        },
        None => Target::Snapshot(a.as_of),
    };
    let invalid = |e: sql::SqlError| Failure {
        code: exit::INVALID_DEFINITION,
        error: anyhow::anyhow!(e),
    };
    if let Err(errs) = sql::check(&set, a.dialect) {
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        return Err(Failure {
            code: exit::INVALID_DEFINITION,
            error: anyhow::anyhow!(lines.join("\n")),
        });
    }
    let q = sql::compile(&set, a.dialect, &target).map_err(|e| {
        // Bad targets are usage errors; the rest are definitions without an SQL form.
        if e.feature.is_none() {
            Failure {
                code: exit::USAGE,
                error: anyhow::anyhow!(e),
            }
        } else {
            invalid(e)
        }
    })?;
    print!("{q}");
    Ok(())
}
