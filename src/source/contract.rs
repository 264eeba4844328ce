//! The input contract in code: the four Customer 360 tables, their columns, logical
//! types and value rules. This is the code twin of `customer360-tables.md`; change both
//! together.

/// The logical types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Str,
    Timestamp,
    Float,
    Int,
    Bool,
}

impl ColType {
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

#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub ty: ColType,
    pub nullable: bool,
    pub pii: bool,
    pub description: &'static str,
}

/// A value rule beyond the column type.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    OneOf(&'static str, &'static [&'static str]),
    NonNegativeFinite(&'static str),
    Range(&'static str, i64, i64),
}

#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub name: &'static str,
    /// The unique id column, if the table has one.
    pub key: Option<&'static str>,
    /// The event-time column that point-in-time filtering uses by default.
    pub ts: &'static str,
    pub columns: &'static [ColumnSpec],
    pub rules: &'static [Rule],
    /// Whether rows must reference an existing customer.
    pub references_customers: bool,
}

impl TableSpec {
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

pub(crate) const ORDER_STATUSES: &[&str] = &["completed", "returned", "cancelled"];
pub(crate) const EVENT_TYPES: &[&str] = &[
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
