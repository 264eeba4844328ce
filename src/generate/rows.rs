//! Row buffers of the four generated tables, and their conversion to polars frames.
//!
//! A buffer keeps what a customer's simulation drew in compact form (the customer's index
//! instead of its id string, a row's number within its customer instead of its id); the
//! id strings are formatted only when a row group is built. [`Rows::take_front`] cuts a
//! buffer after a number of rows, so a table's rows can be written in row groups of a
//! fixed size whatever the customer chunks that produced them.

use std::fmt::Write;

use polars::prelude::*;

/// A table's row buffer: append in customer order, cut at a row count, turn into a frame.
pub(crate) trait Rows: Default + Send {
    /// Rows held.
    fn len(&self) -> usize;
    /// Moves every row of `other` after this buffer's rows.
    fn append(&mut self, other: &mut Self);
    /// Makes room for `n` more rows (exactly, so appending many parts does not double
    /// the memory).
    fn reserve(&mut self, n: usize);
    /// Removes the first `n` rows (at most all of them) and returns them.
    fn take_front(&mut self, n: usize) -> Self;
    /// The rows as a frame with the table's published schema.
    fn frame(self) -> PolarsResult<DataFrame>;
}

/// Cuts the first `n` items off `v` (all of them when `n >= v.len()`).
fn front<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
    let rest = v.split_off(n.min(v.len()));
    std::mem::replace(v, rest)
}

fn ts_column(name: &str, v: Vec<i64>) -> PolarsResult<Column> {
    Series::new(name.into(), v)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .map(Column::from)
}

fn ts_opt_column(name: &str, v: Vec<Option<i64>>) -> PolarsResult<Column> {
    Series::new(name.into(), v)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .map(Column::from)
}

/// `C0000001` for customer index 0.
#[cfg(test)]
pub(crate) fn customer_id(i: u32) -> String {
    format!("C{:07}", u64::from(i) + 1)
}

/// A string column whose values `fmt` writes into a reused buffer (no `String` per row);
/// `fmt` returns false for a null.
fn string_column<I, F>(name: &str, items: I, mut fmt: F) -> Column
where
    I: ExactSizeIterator,
    F: FnMut(I::Item, &mut String) -> bool,
{
    let mut b = StringChunkedBuilder::new(name.into(), items.len());
    let mut buf = String::new();
    for item in items {
        buf.clear();
        if fmt(item, &mut buf) {
            b.append_value(buf.as_str());
        } else {
            b.append_null();
        }
    }
    b.finish().into_series().into_column()
}

fn customer_ids(v: &[u32]) -> Column {
    string_column("customer_id", v.iter(), |&i, buf| {
        write!(buf, "C{:07}", u64::from(i) + 1).is_ok()
    })
}

/// `{prefix}{customer:07}-{n:0width$}`: an order or ticket id.
fn row_ids(name: &str, prefix: char, width: usize, cust: &[u32], n: &[u32]) -> Column {
    string_column(name, cust.iter().zip(n), |(&i, &n), buf| {
        write!(buf, "{prefix}{:07}-{n:0width$}", u64::from(i) + 1).is_ok()
    })
}

/// Applies `$m!(field)` to every field of a buffer, for `append` and `take_front`.
macro_rules! each_field {
    ($self:ident, $other:ident, append: $($f:ident),+) => {
        $( $self.$f.append(&mut $other.$f); )+
    };
    ($self:ident, $n:ident, front: $($f:ident),+) => {
        Self { $( $f: front(&mut $self.$f, $n), )+ }
    };
    ($self:ident, $n:ident, reserve: $($f:ident),+) => {
        $( $self.$f.reserve_exact($n); )+
    };
}

/// `customers`: one row per customer.
#[derive(Default)]
pub(crate) struct CustomerRows {
    pub idx: Vec<u32>,
    pub signup: Vec<i64>,
    pub country: Vec<Option<&'static str>>,
    pub segment: Vec<Option<&'static str>>,
    /// Whether the customer has an email address (`customer{n}@example.com`).
    pub email: Vec<bool>,
    pub opt_in: Vec<Option<bool>>,
}

impl Rows for CustomerRows {
    fn len(&self) -> usize {
        self.idx.len()
    }
    fn append(&mut self, o: &mut Self) {
        each_field!(self, o, append: idx, signup, country, segment, email, opt_in);
    }
    fn reserve(&mut self, k: usize) {
        each_field!(self, k, reserve: idx, signup, country, segment, email, opt_in);
    }
    fn take_front(&mut self, n: usize) -> Self {
        each_field!(self, n, front: idx, signup, country, segment, email, opt_in)
    }
    fn frame(self) -> PolarsResult<DataFrame> {
        let email = string_column(
            "email",
            self.idx.iter().zip(&self.email),
            |(&i, &has), buf| {
                has && write!(buf, "customer{}@example.com", u64::from(i) + 1).is_ok()
            },
        );
        DataFrame::new_infer_height(vec![
            customer_ids(&self.idx),
            ts_column("signup_ts", self.signup)?,
            Column::new("country".into(), self.country),
            Column::new("segment".into(), self.segment),
            email,
            Column::new("email_opt_in".into(), self.opt_in),
        ])
    }
}

/// `orders`: a customer's orders in time order.
#[derive(Default)]
pub(crate) struct OrderRows {
    pub cust: Vec<u32>,
    /// The order's number within its customer, from 1.
    pub n: Vec<u32>,
    pub ts: Vec<i64>,
    pub amount: Vec<f64>,
    pub status: Vec<&'static str>,
    pub channel: Vec<Option<&'static str>>,
}

impl Rows for OrderRows {
    fn len(&self) -> usize {
        self.cust.len()
    }
    fn append(&mut self, o: &mut Self) {
        each_field!(self, o, append: cust, n, ts, amount, status, channel);
    }
    fn reserve(&mut self, k: usize) {
        each_field!(self, k, reserve: cust, n, ts, amount, status, channel);
    }
    fn take_front(&mut self, k: usize) -> Self {
        each_field!(self, k, front: cust, n, ts, amount, status, channel)
    }
    fn frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new_infer_height(vec![
            row_ids("order_id", 'O', 4, &self.cust, &self.n),
            customer_ids(&self.cust),
            ts_column("order_ts", self.ts)?,
            Column::new("amount".into(), self.amount),
            Column::new("status".into(), self.status),
            Column::new("channel".into(), self.channel),
        ])
    }
}

/// `interactions`: web visits, then app logins, then marketing emails, each in time order.
#[derive(Default)]
pub(crate) struct InteractionRows {
    pub cust: Vec<u32>,
    pub ts: Vec<i64>,
    pub kind: Vec<&'static str>,
}

impl Rows for InteractionRows {
    fn len(&self) -> usize {
        self.cust.len()
    }
    fn append(&mut self, o: &mut Self) {
        each_field!(self, o, append: cust, ts, kind);
    }
    fn reserve(&mut self, k: usize) {
        each_field!(self, k, reserve: cust, ts, kind);
    }
    fn take_front(&mut self, n: usize) -> Self {
        each_field!(self, n, front: cust, ts, kind)
    }
    fn frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new_infer_height(vec![
            customer_ids(&self.cust),
            ts_column("event_ts", self.ts)?,
            Column::new("event_type".into(), self.kind),
        ])
    }
}

/// `support_tickets`: a customer's tickets in the order they were opened.
#[derive(Default)]
pub(crate) struct TicketRows {
    pub cust: Vec<u32>,
    /// The ticket's number within its customer, from 1.
    pub n: Vec<u32>,
    pub opened: Vec<i64>,
    pub resolved: Vec<Option<i64>>,
    pub category: Vec<Option<&'static str>>,
    pub csat: Vec<Option<i64>>,
}

impl Rows for TicketRows {
    fn len(&self) -> usize {
        self.cust.len()
    }
    fn append(&mut self, o: &mut Self) {
        each_field!(self, o, append: cust, n, opened, resolved, category, csat);
    }
    fn reserve(&mut self, k: usize) {
        each_field!(self, k, reserve: cust, n, opened, resolved, category, csat);
    }
    fn take_front(&mut self, k: usize) -> Self {
        each_field!(self, k, front: cust, n, opened, resolved, category, csat)
    }
    fn frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new_infer_height(vec![
            row_ids("ticket_id", 'T', 3, &self.cust, &self.n),
            customer_ids(&self.cust),
            ts_column("opened_ts", self.opened)?,
            ts_opt_column("resolved_ts", self.resolved)?,
            Column::new("category".into(), self.category),
            Column::new("csat".into(), self.csat),
        ])
    }
}

/// The rows of a run of consecutive customers, for all four tables.
#[derive(Default)]
pub(crate) struct Batch {
    pub customers: CustomerRows,
    pub orders: OrderRows,
    pub interactions: InteractionRows,
    pub tickets: TicketRows,
    /// Customers whose churn date falls inside the period.
    pub churners: usize,
}

impl Batch {
    /// Makes room for the rows of `parts`.
    pub fn reserve(&mut self, parts: &[Batch]) {
        let sum = |f: fn(&Batch) -> usize| parts.iter().map(f).sum::<usize>();
        self.customers.reserve(sum(|b| b.customers.len()));
        self.orders.reserve(sum(|b| b.orders.len()));
        self.interactions.reserve(sum(|b| b.interactions.len()));
        self.tickets.reserve(sum(|b| b.tickets.len()));
    }

    /// Moves every row of `other` after this batch's rows.
    pub fn append(&mut self, other: &mut Batch) {
        self.customers.append(&mut other.customers);
        self.orders.append(&mut other.orders);
        self.interactions.append(&mut other.interactions);
        self.tickets.append(&mut other.tickets);
        self.churners += other.churners;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_front_cuts_every_field_at_the_same_row() {
        let mut o = OrderRows::default();
        for k in 0..5u32 {
            o.cust.push(k / 2);
            o.n.push(k % 2 + 1);
            o.ts.push(i64::from(k));
            o.amount.push(f64::from(k));
            o.status.push("completed");
            o.channel.push(None);
        }
        let head = o.take_front(3);
        assert_eq!(head.cust, vec![0, 0, 1]);
        assert_eq!(head.ts, vec![0, 1, 2]);
        assert_eq!(o.cust, vec![1, 2]);
        assert_eq!(o.amount, vec![3.0, 4.0]);
        let rest = o.take_front(10);
        assert_eq!(rest.len(), 2);
        assert_eq!(o.len(), 0);
        let df = head.frame().unwrap();
        let ids: Vec<_> = df
            .column("order_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(ids, ["O0000001-0001", "O0000001-0002", "O0000002-0001"]);
    }

    #[test]
    fn empty_buffers_have_the_published_schemas() {
        let c = CustomerRows::default().frame().unwrap();
        assert_eq!(
            c.get_column_names(),
            [
                "customer_id",
                "signup_ts",
                "country",
                "segment",
                "email",
                "email_opt_in"
            ]
        );
        assert_eq!(
            c.column("signup_ts").unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Microseconds, None)
        );
        let t = TicketRows::default().frame().unwrap();
        assert_eq!(t.column("csat").unwrap().dtype(), &DataType::Int64);
        assert_eq!(
            t.column("resolved_ts").unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Microseconds, None)
        );
        assert_eq!(customer_id(9_999_999), "C10000000");
    }
}
