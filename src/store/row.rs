//! One row of a replicated table, as the replica stores it: values in catalog column order,
//! uuids as lowercase text, timestamps as canonical UTC text. Columns are read by name (the
//! row knows its table), so a view never depends on where a column sits in the catalog.

use auto_order_sync::catalog::Table;
use auto_order_sync::rusqlite::types::Value;

use super::StoreError;

#[derive(Debug, Clone)]
pub struct Row {
    table: &'static Table,
    values: Vec<Value>,
}

impl Row {
    /// `values` in `table`'s catalog column order.
    pub fn new(table: &'static Table, values: Vec<Value>) -> Row {
        Row { table, values }
    }

    /// Decodes a Postgres `to_jsonb(row)` image into the replica's form.
    pub fn from_json(table: &'static Table, json: &str) -> Result<Row, StoreError> {
        auto_order_sync::decode::row_from_json(table, json)
            .map(|values| Row { table, values })
            .map_err(|e| StoreError::Decode(anyhow::anyhow!("{e}")))
    }

    pub fn text(&self, column: &str) -> String {
        self.opt_text(column).unwrap_or_default()
    }

    pub fn opt_text(&self, column: &str) -> Option<String> {
        match self.value(column) {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn int(&self, column: &str) -> i64 {
        self.opt_int(column).unwrap_or_default()
    }

    pub fn opt_int(&self, column: &str) -> Option<i64> {
        match self.value(column) {
            Some(Value::Integer(n)) => Some(*n),
            _ => None,
        }
    }

    /// A column the catalog does not have is a bug in the view that asks for it, found by
    /// the first test that reads the view.
    fn value(&self, column: &str) -> Option<&Value> {
        let i = self
            .table
            .columns
            .iter()
            .position(|c| c.name == column)
            .unwrap_or_else(|| panic!("{} has no column {column}", self.table.name));
        self.values.get(i)
    }
}

#[cfg(test)]
mod tests {
    use auto_order_sync::catalog::PRODUCTS;

    use super::*;

    #[test]
    fn columns_are_read_by_name_in_catalog_order() {
        let values = PRODUCTS
            .columns
            .iter()
            .map(|c| match c.name {
                "name" => Value::Text("Oat milk".into()),
                "reorder_quantity" => Value::Integer(6),
                _ => Value::Null,
            })
            .collect();
        let row = Row::new(&PRODUCTS, values);
        assert_eq!(row.text("name"), "Oat milk");
        assert_eq!(row.int("reorder_quantity"), 6);
        assert_eq!(row.opt_text("unit"), None);
    }
}
