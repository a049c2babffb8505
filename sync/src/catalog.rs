//! The replicated tables, as both the primary and the replica must see them.
//!
//! Adding a replicated table takes three things: a Postgres migration that creates it and
//! calls `sync.replicate('<table>')`, the table in `sql/sqlite/replica.sql`, and an entry
//! here. At connect time the engine checks this catalog against the primary's
//! `information_schema` and refuses (a fatal error) to apply changes it cannot represent.

/// How a column is carried from Postgres into SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// `uuid`, stored as lowercase hyphenated text.
    Uuid,
    /// `text` or `char(n)`, stored as text.
    Text,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `timestamptz`, stored as fixed-width UTC text `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    Timestamptz,
}

impl ColumnKind {
    /// The `information_schema.columns.data_type` Postgres reports for this kind.
    pub fn accepts_pg_type(self, data_type: &str) -> bool {
        match self {
            ColumnKind::Uuid => data_type == "uuid",
            ColumnKind::Text => data_type == "text" || data_type == "character",
            ColumnKind::Int4 => data_type == "integer",
            ColumnKind::Int8 => data_type == "bigint",
            ColumnKind::Timestamptz => data_type == "timestamp with time zone",
        }
    }
}

#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
}

/// A replicated table. Its first column is the primary key `id`; it has a `version` column.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
}

impl Table {
    pub fn column_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns.iter().map(|c| c.name)
    }
}

const fn col(name: &'static str, kind: ColumnKind) -> Column {
    Column { name, kind }
}

use ColumnKind::*;

pub static PRODUCTS: Table = Table {
    name: "products",
    columns: &[
        col("id", Uuid),
        col("owner_id", Text),
        col("name", Text),
        col("unit", Text),
        col("reorder_quantity", Int4),
        col("price_cents", Int4),
        col("notes", Text),
        col("created_at", Timestamptz),
        col("updated_at", Timestamptz),
        col("version", Int8),
    ],
};

pub static ORDERS: Table = Table {
    name: "orders",
    columns: &[
        col("id", Uuid),
        col("owner_id", Text),
        col("product_id", Uuid),
        col("quantity", Int4),
        col("unit_price_cents", Int4),
        col("currency", Text),
        col("ordered_at", Timestamptz),
        col("created_at", Timestamptz),
        col("updated_at", Timestamptz),
        col("version", Int8),
    ],
};

/// Every replicated table.
pub static TABLES: &[&Table] = &[&PRODUCTS, &ORDERS];

/// Looks a replicated table up by name.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().copied().find(|t| t.name == name)
}
