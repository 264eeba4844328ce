//! `c360 products`: list the published data products, show one (owner, contract,
//! versions, latest statistics), get one customer's row, remove unreferenced runs (`gc`).

use std::path::Path;

use clap::Subcommand;

use super::Failure;
use crate::product;
use crate::project::Project;

/// `c360 products`
#[derive(Debug, Subcommand)]
pub enum ProductsCmd {
    /// List the published data products.
    List {
        #[arg(long)]
        store: Option<String>,
    },
    /// Show a product: owner, contract, versions, latest statistics.
    Show {
        product: String,
        #[arg(long)]
        store: Option<String>,
    },
    /// One customer's row of the latest version, as JSON.
    Get {
        product: String,
        customer_id: String,
        #[arg(long)]
        store: Option<String>,
    },
    /// Remove a product's run directories that no reader can reach and that are older than
    /// retention.
    #[command(after_help = GC_HELP)]
    Gc {
        /// The product (`[product] name` of its job).
        product: String,
        /// List what would be removed; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep every run directory with an object written within this many days
        /// (default: the job's `[product] retention_days`, else the one in the product's
        /// contract).
        #[arg(long, value_name = "N")]
        retention_days: Option<u32>,
        /// The store (default: `[store] uri` of c360.toml).
        #[arg(long)]
        store: Option<String>,
    },
}

const GC_HELP: &str = "\
Every publish writes its parts under a directory of its own,
products/<p>/v<major>/as_of=<D>/run=<run_id>-<8hex>/, then commits the partition's
_manifest.json. Re-publishing an as-of, a killed publish or a damaged partition redone
leaves run directories that nothing reads. gc removes a run directory only when
  - no committed _manifest.json lists a file in it,
  - latest.json does not name it,
  - the catalog ([catalog] in c360.toml, e.g. Glue) references no location in or around it,
  - and every object in it was last written more than the retention ago.
Manifests, latest.json, contract.yaml, catalog entries and the old layout's parts at a
partition root are never removed. Safe to stop at any point: run it again to finish.
Keep the retention longer than a publish takes: a run directory being written now is
unreferenced until its manifest commits.

Examples:
  c360 products gc customer_churn_scores --dry-run
  c360 products gc customer_churn_scores --retention-days 30
  c360 products gc customer_churn_scores --store s3://bucket/c360";

/// Runs a `c360 products` command.
pub fn products(config: Option<&Path>, cmd: ProductsCmd) -> Result<(), Failure> {
    let project = Project::load(config)?;
    let open =
        |s: &Option<String>| crate::store::open(&s.clone().unwrap_or_else(|| project.store_uri()));
    match cmd {
        ProductsCmd::List { store } => {
            let st = open(&store)?;
            let list = product::list(st.as_ref())?;
            if list.is_empty() {
                println!(
                    "no products in {} yet (publish one with `c360 run JOB`)",
                    st.uri()
                );
                return Ok(());
            }
            println!(
                "{:<28} {:<14} {:<12} {:>9}  owner",
                "product", "domain", "latest", "versions"
            );
            for e in list {
                let latest = product::latest(st.as_ref(), &e.name)?
                    .map(|l| l.as_of.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<28} {:<14} {:<12} {:>9}  {}",
                    e.name,
                    e.domain,
                    latest,
                    e.versions.len(),
                    e.owner
                );
            }
            Ok(())
        }
        ProductsCmd::Show {
            product: name,
            store,
        } => {
            let st = open(&store)?;
            let entry = product::list(st.as_ref())?
                .into_iter()
                .find(|e| e.name == name)
                .ok_or_else(|| product::ProductError::NotFound(name.clone()))?;
            println!(
                "{}  ({} domain, owner {})",
                entry.name, entry.domain, entry.owner
            );
            println!("{}", entry.description);
            println!("consumers: {}", entry.consumers.join(", "));
            println!("contract:  {}/{}", st.uri(), entry.contract);
            println!(
                "versions:  {}",
                entry
                    .versions
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some((l, m)) = product::resolve_latest(st.as_ref(), &name)? {
                println!(
                    "latest:    {} ({} rows, run {}, committed {})",
                    l.as_of, l.rows, l.run_id, l.committed_at
                );
                if let Some(s) = m.extra.get("score_statistics") {
                    println!(
                        "scores:    {}",
                        serde_json::to_string(s).unwrap_or_default()
                    );
                }
            }
            println!("columns:");
            for c in entry.columns {
                println!("  {:<20} {}", c.name, c.dtype);
            }
            Ok(())
        }
        ProductsCmd::Get {
            product: name,
            customer_id,
            store,
        } => {
            let st = open(&store)?;
            let row = product::get_customer(st.as_ref(), &name, &customer_id)?;
            println!("{}", serde_json::to_string_pretty(&row).unwrap_or_default());
            Ok(())
        }
        ProductsCmd::Gc {
            product: name,
            dry_run,
            retention_days,
            store,
        } => {
            let store_uri = store.unwrap_or_else(|| project.store_uri());
            let st = crate::store::open(&store_uri)?;
            let mesh = crate::mesh::Mesh::open(&project.config, &store_uri)?;
            let retention = product::resolve_retention(
                st.as_ref(),
                &name,
                retention_days,
                Some(&project.jobs_dir()),
            )?;
            if retention.days == 0 && !dry_run {
                eprintln!("warning: retention 0 removes every unreferenced run directory, including the parts of a publish of {name} running right now (its commit would then fail); run it only when no job of the product runs");
            }
            let now = chrono::Utc::now();
            let opts = product::GcOptions {
                retention_days: retention.days,
                now,
                dry_run,
            };
            let report = product::gc(st.as_ref(), mesh.catalog.as_ref(), &name, &opts)?;
            // A dry run's list is what was asked; a real gc's is a summary (not under -q).
            if dry_run || !super::quiet() {
                print_gc(&report, &retention, now);
            }
            Ok(())
        }
    }
}

/// One line per run directory removed (or that would be), then the total.
fn print_gc(
    r: &product::GcReport,
    retention: &product::Retention,
    now: chrono::DateTime<chrono::Utc>,
) {
    use crate::transform::planner::format_bytes;
    let verb = if r.dry_run { "would remove" } else { "removed" };
    println!(
        "{}: retention {} day(s) (from {}){}",
        r.product,
        r.retention_days,
        retention.from,
        r.cutoff
            .map(|c| format!(
                ", removing runs last written before {}",
                c.format("%Y-%m-%d %H:%M:%S UTC")
            ))
            .unwrap_or_default()
    );
    for d in &r.removed {
        println!(
            "{verb:<12}  as_of {}  v{}  {}  {:>3} object(s)  {:>10}  age {}",
            d.as_of,
            d.major,
            d.name(),
            d.objects,
            format_bytes(d.bytes),
            d.age(now)
                .map(product::format_age)
                .unwrap_or_else(|| "unknown".into())
        );
    }
    let kept = r
        .kept_by_reason()
        .into_iter()
        .map(|(why, n)| format!("{n} {}", why.as_str()))
        .collect::<Vec<_>>();
    println!(
        "total: {} run director{}, {} {}; kept {}{}",
        r.removed.len(),
        if r.removed.len() == 1 { "y" } else { "ies" },
        format_bytes(r.bytes_removed()),
        if r.dry_run {
            "would be removed (dry run: nothing deleted)"
        } else {
            "removed"
        },
        r.kept.len(),
        if kept.is_empty() {
            String::new()
        } else {
            format!(" ({})", kept.join(", "))
        }
    );
}
