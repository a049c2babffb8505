//! One row of a replicated table, as the replica stores it: values in catalog column order,
//! uuids as lowercase text, timestamps as canonical UTC text.

use auto_order_sync::catalog::Table;
use auto_order_sync::rusqlite::types::Value;

use super::StoreError;

#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    pub fn new(values: Vec<Value>) -> Row {
        Row(values)
    }

    /// Decodes a Postgres `to_jsonb(row)` image into the replica's form.
    pub fn from_json(table: &Table, json: &str) -> Result<Row, StoreError> {
        auto_order_sync::decode::row_from_json(table, json)
            .map(Row)
            .map_err(|e| StoreError::Decode(anyhow::anyhow!("{e}")))
    }

    pub fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn int(&self, i: usize) -> i64 {
        self.opt_int(i).unwrap_or_default()
    }

    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Value::Integer(n)) => Some(*n),
            _ => None,
        }
    }
}
