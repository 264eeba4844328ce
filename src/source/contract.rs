//! The input contract in code: the four Customer 360 tables, their columns, logical
//! types and value rules. This is the code twin of `customer360-tables.md`; change both
//! together.

/// The logical types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// Text (`Utf8`); ids are text.
    Str,
    /// A point in time (`Datetime`), read as its UTC day number.
    Timestamp,
    /// `Float64`.
    Float,
    /// `Int64`.
    Int,
    /// `Boolean`.
    Bool,
}

impl ColType {
    /// The type's name in customer360-tables.md and in messages.
    pub fn name(self) -> &'static str {
        match self {
            ColType::Str => "Utf8",
            ColType::Timestamp => "Datetime",
            ColType::Float => "Float64",
            ColType::Int => "Int64",
            ColType::Bool => "Boolean",
        }
    }
}

/// One column of a contract table.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// The column's name.
    pub name: &'static str,
    /// Its logical type.
    pub ty: ColType,
    /// Whether it may hold nulls.
    pub nullable: bool,
    /// Whether it holds personal data (never copied into a data product).
    pub pii: bool,
    /// A note for the contract docs (empty for most columns).
    pub description: &'static str,
}

/// A value rule beyond the column type.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// The column's values are among the given ones.
    OneOf(&'static str, &'static [&'static str]),
    /// The column's values are finite and not negative.
    NonNegativeFinite(&'static str),
    /// The column's values are within `lo..=hi`.
    Range(&'static str, i64, i64),
}

/// One table of the input contract.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    /// The table's name (and its file or folder name in a source).
    pub name: &'static str,
    /// The unique id column, if the table has one.
    pub key: Option<&'static str>,
    /// The event-time column that point-in-time filtering uses by default.
    pub ts: &'static str,
    /// Its columns, in contract order.
    pub columns: &'static [ColumnSpec],
    /// Value rules beyond the column types.
    pub rules: &'static [Rule],
    /// Whether rows must reference an existing customer.
    pub references_customers: bool,
}

impl TableSpec {
    /// The contract column of that name.
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }
}

const fn col(name: &'static str, ty: ColType, nullable: bool) -> ColumnSpec {
    ColumnSpec {
        name,
        ty,
        nullable,
        pii: false,
        description: "",
    }
}

const ORDER_STATUSES: &[&str] = &["completed", "returned", "cancelled"];
const EVENT_TYPES: &[&str] = &[
    "web_visit",
    "app_login",
    "email_sent",
    "email_open",
    "email_click",
    "unsubscribe",
];

/// The input contract: the four Customer 360 tables.
pub const CONTRACT: &[TableSpec] = &[
    TableSpec {
        name: "customers",
        key: Some("customer_id"),
        ts: "signup_ts",
        columns: &[
            col("customer_id", ColType::Str, false),
            col("signup_ts", ColType::Timestamp, false),
            col("country", ColType::Str, true),
            col("segment", ColType::Str, true),
            ColumnSpec {
                name: "email",
                ty: ColType::Str,
                nullable: true,
                pii: true,
                description: "PII: never copied into a data product",
            },
            col("email_opt_in", ColType::Bool, true),
        ],
        rules: &[],
        references_customers: false,
    },
    TableSpec {
        name: "orders",
        key: Some("order_id"),
        ts: "order_ts",
        columns: &[
            col("order_id", ColType::Str, false),
            col("customer_id", ColType::Str, false),
            col("order_ts", ColType::Timestamp, false),
            col("amount", ColType::Float, false),
            col("status", ColType::Str, false),
            col("channel", ColType::Str, true),
        ],
        rules: &[
            Rule::NonNegativeFinite("amount"),
            Rule::OneOf("status", ORDER_STATUSES),
        ],
        references_customers: true,
    },
    TableSpec {
        name: "interactions",
        key: None,
        ts: "event_ts",
        columns: &[
            col("customer_id", ColType::Str, false),
            col("event_ts", ColType::Timestamp, false),
            col("event_type", ColType::Str, false),
        ],
        rules: &[Rule::OneOf("event_type", EVENT_TYPES)],
        references_customers: true,
    },
    TableSpec {
        name: "support_tickets",
        key: Some("ticket_id"),
        ts: "opened_ts",
        columns: &[
            col("ticket_id", ColType::Str, false),
            col("customer_id", ColType::Str, false),
            col("opened_ts", ColType::Timestamp, false),
            col("resolved_ts", ColType::Timestamp, true),
            col("category", ColType::Str, true),
            col("csat", ColType::Int, true),
        ],
        rules: &[Rule::Range("csat", 1, 5)],
        references_customers: true,
    },
];

/// The contract table of that name.
pub fn table_spec(name: &str) -> Option<&'static TableSpec> {
    CONTRACT.iter().find(|t| t.name == name)
}

/// The id columns of a table: its key and its customer reference.
pub(super) fn id_columns(spec: &TableSpec) -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = spec.key.into_iter().collect();
    if spec.column("customer_id").is_some() && !ids.contains(&"customer_id") {
        ids.push("customer_id");
    }
    ids
}
